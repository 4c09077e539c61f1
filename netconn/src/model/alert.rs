//! The alert kinds, one list for every place that names them: the
//! records' `alert` field, the configuration's `[alerts.*]` tables and
//! environment variables, `check --alerts` and the exporter's series.

/// An alert kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The conntrack table filling up (see [`crate::conntrack`]).
    ConntrackFull,
    /// A socket listens on an address and port not allowed.
    NewListener,
    /// New connections per second against a learned baseline.
    ConnSpike,
    /// Handshakes left uncompleted on a listener.
    SynFlood,
    /// One address touching many closed ports.
    PortScan,
    /// The ephemeral ports to one destination running out.
    PortExhaustion,
}

impl Kind {
    pub const ALL: [Self; 6] = [
        Self::ConntrackFull,
        Self::NewListener,
        Self::ConnSpike,
        Self::SynFlood,
        Self::PortScan,
        Self::PortExhaustion,
    ];

    /// Its name in records and in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ConntrackFull => "conntrack_full",
            Self::NewListener => "new_listener",
            Self::ConnSpike => "conn_spike",
            Self::SynFlood => "syn_flood",
            Self::PortScan => "port_scan",
            Self::PortExhaustion => "port_exhaustion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_each_kind_as_the_configuration_does() {
        for kind in Kind::ALL {
            let name = serde_json::Value::from(kind.name());
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(serde_json::from_value::<Kind>(name).unwrap(), kind);
        }
    }
}
