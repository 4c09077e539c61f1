//! Per conn-type x state connection counts.

use serde_json::Value;

use crate::model::socket::DumpedSocket;
use crate::model::state::ConnType;

/// Dense table: conn-type x kernel state code (0..16). UDP uses one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    cells: [[i64; 16]; 4],
}

/// The slot UDP counts live in (the state code is meaningless for UDP).
const UDP_SLOT: u8 = 0;

impl Counts {
    pub fn get(&self, conn_type: ConnType, state: u8) -> i64 {
        let state = if conn_type.is_tcp() { state } else { UDP_SLOT };
        self.cells[conn_type.index()][(state & 15) as usize]
    }

    pub fn add(&mut self, conn_type: ConnType, state: u8, delta: i64) {
        let state = if conn_type.is_tcp() { state } else { UDP_SLOT };
        self.cells[conn_type.index()][(state & 15) as usize] += delta;
    }

    /// Counts every socket as the kernel reported it (what `ss` shows).
    pub fn from_dump(sockets: &[DumpedSocket]) -> Self {
        let mut c = Self::default();
        for s in sockets {
            c.add(s.conn_type, s.state, 1);
        }
        c
    }

    pub fn total(&self) -> i64 {
        self.cells.iter().flatten().sum()
    }

    /// Iterates over `(conn_type, state name, count)` for every named state,
    /// zeros included, TCP states in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnType, &'static str, i64)> + '_ {
        const TCP_CODES: [u8; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        ConnType::ALL.into_iter().flat_map(move |ct| {
            let codes: &[u8] = if ct.is_tcp() { &TCP_CODES } else { &[UDP_SLOT] };
            codes.iter().map(move |&code| {
                let name = ct.state_name(code).expect("named state");
                (ct, name, self.get(ct, code))
            })
        })
    }

    /// The non-zero cells alone, for rendering: `{"tcp":{"FIN_WAIT1":-3}}`.
    pub fn nonzero(&self) -> NonZero<'_> {
        NonZero(self)
    }

    /// `{"tcp":{"ESTABLISHED":3,...},"tcp6":{...},"udp":{"NONE":2},"udp6":{...}}`
    /// with every state present, so dashboards see stable keys.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("counts serialize")
    }

    /// Renders the cells `keep` keeps, per conn-type (a conn-type with none
    /// left out when `skip_empty`).
    fn serialize_where<S: serde::Serializer>(
        &self,
        s: S,
        keep: impl Fn(i64) -> bool,
        skip_empty: bool,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// One conn-type's states, in order.
        struct States(Vec<(&'static str, i64)>);
        impl serde::Serialize for States {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (*k, *v)))
            }
        }
        let mut map = s.serialize_map(None)?;
        for ct in ConnType::ALL {
            let states: Vec<(&'static str, i64)> = self
                .iter()
                .filter(|(c, _, n)| *c == ct && keep(*n))
                .map(|(_, state, n)| (state, n))
                .collect();
            if !(skip_empty && states.is_empty()) {
                map.serialize_entry(ct.name(), &States(states))?;
            }
        }
        map.end()
    }

    /// Reads back what [`Counts::to_json`] wrote; `None` for anything else.
    pub fn from_json(json: &Value) -> Option<Self> {
        let mut c = Self::default();
        for (ct_name, states) in json.as_object()? {
            let ct = ConnType::ALL.into_iter().find(|ct| ct.name() == ct_name)?;
            for (state, n) in states.as_object()? {
                let code = (0..16u8).find(|code| ct.state_name(*code) == Some(state.as_str()))?;
                c.add(ct, code, n.as_i64()?);
            }
        }
        Some(c)
    }
}

/// Every conn-type and state, zeros included.
impl serde::Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize_where(s, |_| true, false)
    }
}

/// See [`Counts::nonzero`].
pub struct NonZero<'a>(&'a Counts);

impl serde::Serialize for NonZero<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_where(s, |n| n != 0, true)
    }
}

impl Counts {
    /// Combines two tables cell by cell.
    fn zip_with(mut self, rhs: Self, f: impl Fn(i64, i64) -> i64) -> Self {
        for (a, b) in self
            .cells
            .iter_mut()
            .flatten()
            .zip(rhs.cells.iter().flatten())
        {
            *a = f(*a, *b);
        }
        self
    }
}

impl std::ops::Add for Counts {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        self.zip_with(rhs, |a, b| a + b)
    }
}

impl std::ops::Sub for Counts {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        self.zip_with(rhs, |a, b| a - b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(conn_type: ConnType, state: u8) -> DumpedSocket {
        DumpedSocket::test(conn_type, state)
    }

    #[test]
    fn json_has_every_state_and_the_counts() {
        let c = Counts::from_dump(&[
            sock(ConnType::Tcp, 1),
            sock(ConnType::Tcp, 1),
            sock(ConnType::Tcp6, 10),
            sock(ConnType::Udp, 7),
            sock(ConnType::Udp, 1),
        ]);
        let j = c.to_json();
        assert_eq!(j["tcp"]["ESTABLISHED"], 2);
        assert_eq!(j["tcp6"]["LISTEN"], 1);
        assert_eq!(j["tcp"]["CLOSING"], 0);
        assert_eq!(
            j["udp"]["NONE"], 2,
            "connected and unconnected UDP both count"
        );
        assert_eq!(j["udp6"]["NONE"], 0);
        assert_eq!(j["tcp"].as_object().unwrap().len(), 11);
        assert_eq!(j["udp"].as_object().unwrap().len(), 1);
        assert_eq!(c.total(), 5);
        assert_eq!(c.iter().count(), 11 * 2 + 2);
        assert_eq!(Counts::from_json(&c.to_json()), Some(c));
        assert_eq!(
            Counts::from_json(&serde_json::json!({"tcp": {"BOGUS": 1}})),
            None
        );
        assert_eq!(Counts::from_json(&serde_json::json!({"sctp": {}})), None);
    }
}
