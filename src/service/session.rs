//! Who is asking: the session a request arrives in, from either front door.

use std::fmt;

/// A Kafka principal (`User:alice`). Without authentication every client is `User:ANONYMOUS`,
/// as in Apache Kafka on a PLAINTEXT listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `User:name`: the principal SASL, client certificates and HTTP authentication name.
    pub fn user(name: &str) -> Principal {
        Principal { kind: "User".to_string(), name: name.to_string() }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One client's session: built by the connection (after authentication, once there is any) or
/// by the HTTP listener per request, and passed to every broker service call.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The listener the client came through (`PLAINTEXT`, `HTTP`).
    pub listener: String,
    /// The client's address as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
    /// The client id of the request being served (Kafka sends one per request).
    pub client_id: String,
}

impl Session {
    /// An unauthenticated session on `listener` from `client_host`.
    pub fn anonymous(listener: &str, client_host: &str) -> Session {
        Session {
            principal: Principal::anonymous(),
            listener: listener.to_string(),
            client_host: client_host.to_string(),
            client_id: String::new(),
        }
    }
}
