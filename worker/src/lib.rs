//! tandem-worker: the HTTP worker service hosting job kinds (issue 6).
