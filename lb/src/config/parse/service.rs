//! `[[service]]` and its `[[service.backend]]`s: listeners, scheduling,
//! limits, and each backend's address, name, weight and health overrides.
//! Checks across services: names and listen addresses are unique; backend
//! names are unique within their service.

use super::*;

impl Walker<'_> {
    /// Each service with the line of its `listen` (for the metrics check).
    pub(super) fn services(
        &mut self,
        root: &Table<'_, '_>,
    ) -> Result<Vec<(ServiceConfig, usize)>, Reported> {
        if let Some(v) = root.get("service")
            && !matches!(v.get_ref(), DeValue::Array(_))
            && v.get_ref().get("backend").is_some()
        {
            // `[[service.backend]]` with no `[[service]]` above makes
            // `service` a plain table: say so rather than "wrong type".
            let kind = ErrorKind::Invalid("[[service.backend]] before any [[service]]".into());
            let valid = "a [[service]] table, then its [[service.backend]] tables";
            return Err(self.bad_value(v, root.field("service"), kind, valid));
        }
        let Some(tables) = self.array_of_tables(root, "service", SERVICE_KEYS, "[[service]]")?
        else {
            return Ok(Vec::new());
        };
        let mut names: HashMap<String, (String, usize)> = HashMap::new();
        let mut listens: HashMap<SocketAddr, (String, usize)> = HashMap::new();
        let mut services = Ok(Vec::new());
        for table in tables {
            let Ok(table) = table else {
                services = Err(Reported);
                continue;
            };
            let service = self.service(&table, &mut names, &mut listens);
            match (&mut services, service) {
                (Ok(list), Ok(s)) => list.push(s),
                _ => services = Err(Reported),
            }
        }
        services
    }

    /// `[[key]]` in `parent`: each element as a table (keys checked).
    #[allow(clippy::type_complexity)]
    fn service(
        &mut self,
        table: &Table<'_, '_>,
        names: &mut HashMap<String, (String, usize)>,
        listens: &mut HashMap<SocketAddr, (String, usize)>,
    ) -> Result<(ServiceConfig, usize), Reported> {
        let name = self.required(table, "name", VALID_NAME, |v| parse_name(v, is_name_char));
        self.unique_key(table, "name", &name, names, "a name no other service uses");
        let listen = self.required(table, "listen", VALID_LISTEN, |v| socket_addr(v, false));
        let listen_line = table
            .get("listen")
            .map_or(0, |v| self.lines.line(v.span().start));
        let valid = "an address no other service listens on";
        self.unique_key(table, "listen", &listen, listens, valid);
        let sched_valid = format!("one of {}", names_of_schedulers());
        let scheduler = self.field(table, "scheduler", &sched_valid, |v| {
            let s = string(v)?;
            SchedulerKind::from_name(s)
                .ok_or_else(|| ErrorKind::Invalid("unknown scheduler".into()))
        });
        let positive = format!("{DURATION_EXAMPLES}, greater than zero");
        let connect_timeout =
            self.field(table, "connect_timeout", &positive, |v| duration(v, true));
        let idle_timeout = self.field(table, "idle_timeout", &positive, |v| duration(v, true));
        let retries_valid = format!("an integer from 0 to {}", ServiceConfig::MAX_RETRIES);
        let retries = self.field(table, "retries", &retries_valid, |v| {
            integer(v, 0, i64::from(ServiceConfig::MAX_RETRIES))
        });
        let max_conn_valid = format!("an integer from 1 to {}", u32::MAX);
        let max_connections = self.field(table, "max_connections", &max_conn_valid, |v| {
            integer(v, 1, i64::from(u32::MAX))
        });
        let pp_valid = format!(
            "one of {}",
            join_names(ProxyProtocol::ALL.iter().map(|p| p.name()))
        );
        let proxy_protocol = self.field(table, "proxy_protocol", &pp_valid, |v| {
            one_of(
                v,
                ProxyProtocol::ALL.iter().map(|p| (p.name(), *p)),
                "value",
            )
        });
        let all_down = self.all_down(table);
        if let (Ok(all_down), Ok(listen)) = (&all_down, &listen) {
            self.sorry_is_not_listen(table, all_down, listen);
        }
        let persistence = self.persistence(table);
        let health = self.health_layer(table, None, "[service.health]");
        let backends = self.backends(table, health.as_ref().ok().and_then(Option::as_ref));
        Ok((
            ServiceConfig {
                name: name?,
                listen: listen?,
                scheduler: scheduler?.unwrap_or(ServiceConfig::DEFAULT_SCHEDULER),
                connect_timeout: connect_timeout?.unwrap_or(ServiceConfig::DEFAULT_CONNECT_TIMEOUT),
                idle_timeout: idle_timeout?.unwrap_or(ServiceConfig::DEFAULT_IDLE_TIMEOUT),
                retries: retries?.map_or(ServiceConfig::DEFAULT_RETRIES, |r| r as u32),
                max_connections: max_connections?
                    .map_or(ServiceConfig::DEFAULT_MAX_CONNECTIONS, |m| m as u32),
                proxy_protocol: proxy_protocol?.unwrap_or_default(),
                backends: backends?,
                all_down: all_down?,
                persistence: persistence?,
            },
            listen_line,
        ))
    }

    /// Records the value of the required `key` of `table`, if it was read,
    /// as used by this table; a second use is reported ([`Walker::unique`]).
    fn unique_key<K: std::hash::Hash + Eq + Clone>(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        value: &Result<K, Reported>,
        seen: &mut HashMap<K, (String, usize)>,
        valid: &str,
    ) {
        let Ok(value) = value else { return };
        // Cannot fail: a required key that converted is present.
        let v = table
            .get(key)
            .expect("a required key that converted is present");
        self.unique(seen, value.clone(), v, table.field(key), valid);
    }

    fn backends(
        &mut self,
        service: &Table<'_, '_>,
        health: Option<&HealthLayer<'_, '_>>,
    ) -> Result<Vec<BackendConfig>, Reported> {
        let tables = self
            .array_of_tables(service, "backend", BACKEND_KEYS, "[[service.backend]]")?
            .unwrap_or_default();
        if tables.is_empty() {
            return Err(self.push(
                &service.header,
                service.path.clone(),
                None,
                ErrorKind::Invalid("empty pool: no [[service.backend]]".into()),
                "at least one [[service.backend]] table with an address",
            ));
        }
        // Names defaulted from the address are left to the address check, so
        // one duplicated address is one error, not two.
        let mut names: HashMap<String, (String, usize, bool)> = HashMap::new();
        let mut addresses: HashMap<SocketAddr, (String, usize)> = HashMap::new();
        // The service's own checks, resolved once: backends without a health
        // table share them, and their errors are reported once.
        let shared = self.resolve_health(health, None);
        let mut backends = Ok(Vec::new());
        for table in tables {
            let backend = table.and_then(|t| {
                self.backend(&t, &mut names, &mut addresses, health, shared.as_ref())
            });
            match (&mut backends, backend) {
                (Ok(list), Ok(b)) => list.push(b),
                _ => backends = Err(Reported),
            }
        }
        backends
    }

    fn backend(
        &mut self,
        table: &Table<'_, '_>,
        names: &mut HashMap<String, (String, usize, bool)>,
        addresses: &mut HashMap<SocketAddr, (String, usize)>,
        service_health: Option<&HealthLayer<'_, '_>>,
        shared: Result<&health::Resolved, &Reported>,
    ) -> Result<BackendConfig, Reported> {
        let address = self.required(table, "address", VALID_ADDRESS, |v| socket_addr(v, true));
        let name = self.field(table, "name", VALID_BACKEND_NAME, |v| {
            parse_name(v, |c| is_name_char(c) || matches!(c, ':' | '[' | ']'))
        });
        if let Ok(a) = &address {
            let v = table
                .get("address")
                .expect("a required key that converted is present");
            self.unique(
                addresses,
                *a,
                v,
                table.field("address"),
                "an address no other backend of this service has",
            );
        }
        self.unique_backend_name(table, &name, &address, names);
        let weight_valid = format!(
            "an integer from 0 (drained) to {}",
            BackendConfig::MAX_WEIGHT
        );
        let weight = self.field(table, "weight", &weight_valid, |v| {
            integer(v, 0, i64::from(BackendConfig::MAX_WEIGHT))
        });
        let max_conn_valid = format!("an integer from 1 to {}", u32::MAX);
        let max_connections = self.field(table, "max_connections", &max_conn_valid, |v| {
            integer(v, 1, i64::from(u32::MAX))
        });
        let own = self.health_layer(table, service_health, "[service.backend.health]");
        let resolved = match own {
            Ok(Some(own)) => self.resolve_health(service_health, Some(&own)),
            Ok(None) => shared.cloned().map_err(|_| Reported),
            Err(r) => Err(r),
        };
        let address = address?;
        let (health, passive_fall) = resolved?;
        Ok(BackendConfig {
            name: name?.unwrap_or_else(|| address.to_string()),
            address,
            weight: weight?.map_or(BackendConfig::DEFAULT_WEIGHT, |w| w as u32),
            max_connections: max_connections?.map(|m| m as u32),
            health,
            passive_fall,
        })
    }

    /// Backend names are unique within a service, counting names defaulted
    /// from the address. Two defaulted names clash only if the addresses do,
    /// which the address check already reports: one mistake, one error.
    fn unique_backend_name(
        &mut self,
        table: &Table<'_, '_>,
        name: &Field<String>,
        address: &Result<SocketAddr, Reported>,
        names: &mut HashMap<String, (String, usize, bool)>,
    ) {
        let (resolved, key, explicit) = match (name, address) {
            (Ok(Some(n)), _) => (n.clone(), "name", true),
            (Ok(None), Ok(a)) => (a.to_string(), "address", false),
            _ => return,
        };
        // Cannot fail: the name came from this key.
        let v = table
            .get(key)
            .expect("the key the name came from is present");
        let line = self.lines.line(v.span().start);
        match names.get(&resolved) {
            None => {
                names.insert(resolved, (table.field(key), line, explicit));
            }
            Some((first, first_line, first_explicit)) if explicit || *first_explicit => {
                let kind = ErrorKind::Duplicate {
                    first: first.clone(),
                    first_line: *first_line,
                };
                let valid = if explicit {
                    "a name no other backend of this service has"
                } else {
                    "a name no other backend of this service has (this one is named after its address)"
                };
                self.bad_value(v, table.field(key), kind, valid);
            }
            Some(_) => {}
        }
    }
}
