//! `all_down` and `sorry`: what a service does when none of its backends is
//! up. One policy, written as either key.

use super::super::health::AllDown;
use super::{ErrorKind, Reported, Table, Walker, one_of, socket_addr};

const VALID_ALL_DOWN: &str = "one of refuse, all";

impl Walker<'_> {
    /// `all_down` and `sorry`: one policy, so setting both is an error.
    pub(super) fn all_down(&mut self, table: &Table<'_, '_>) -> Result<AllDown, Reported> {
        let policies = [("refuse", AllDown::Refuse), ("all", AllDown::All)];
        let all_down = self.field(table, "all_down", VALID_ALL_DOWN, |v| {
            one_of(v, policies.into_iter(), "policy")
        });
        let sorry_valid = r#"an IP:port such as "127.0.0.1:8090", not the service's listen address; used when no backend is up"#;
        let sorry = self.field(table, "sorry", sorry_valid, |v| socket_addr(v, true))?;
        let all_down = all_down?;
        match (sorry, all_down) {
            (None, policy) => Ok(policy.unwrap_or_default()),
            (Some(addr), None) => Ok(AllDown::Sorry(addr)),
            (Some(_), Some(_)) => {
                // Cannot fail: both keys were read from this table.
                let sorry_v = table.get("sorry").expect("sorry was read");
                let all_v = table.get("all_down").expect("all_down was read");
                let with = format!(
                    "all_down = {} at line {}",
                    self.lines.written(&all_v.span()),
                    self.lines.line(all_v.span().start)
                );
                Err(self.bad_value(
                    sorry_v,
                    table.field("sorry"),
                    ErrorKind::Conflict { with },
                    "either sorry or all_down, not both: sorry is itself the all-down policy",
                ))
            }
        }
    }

    /// A sorry server equal to the service's own address would loop.
    pub(super) fn sorry_is_not_listen(
        &mut self,
        table: &Table<'_, '_>,
        all_down: &AllDown,
        listen: &std::net::SocketAddr,
    ) {
        if let AllDown::Sorry(addr) = all_down
            && addr == listen
            && let Some(v) = table.get("sorry")
        {
            let kind = ErrorKind::Invalid(
                "the service's own listen address: connections would loop".into(),
            );
            self.bad_value(v, table.field("sorry"), kind, "another server's IP:port");
        }
    }
}
