//! `analyze --udp-flows FILE` and `--udp`: the UDP flow table fed by the engine's
//! datagrams, its records written like `--flows`, its totals (QUIC among them) in the
//! summary.

use std::io;

use tcpsight_core::Datagram;
use tcpsight_export::columns;
use tcpsight_udp::guess::quic_version_name;
use tcpsight_udp::{Proto, UdpConfig, UdpRecord, UdpTable};

use crate::format::thousands;
use crate::output::flows::{FlowFormat, Writer};

pub struct UdpFlows {
    table: UdpTable,
    out: Option<Writer>,
    max_flows: usize,
    error: Option<io::Error>,
}

fn columns() -> Vec<columns::Column> {
    let [full, empty] = UdpRecord::examples();
    columns::of(&full, &empty).expect("the UDP example sets every field")
}

impl UdpFlows {
    /// `path`: where the records go (`-` for stdout; format by name as `--flows`).
    pub fn open(path: Option<&str>, cfg: UdpConfig) -> Result<UdpFlows, String> {
        let out = match path {
            None => None,
            Some(p) => Some(
                Writer::open(
                    p,
                    FlowFormat::of_name(p).unwrap_or(FlowFormat::Jsonl),
                    columns(),
                )
                .map_err(|e| format!("--udp-flows {e}"))?,
            ),
        };
        Ok(UdpFlows {
            table: UdpTable::new(cfg),
            out,
            max_flows: cfg.max_flows,
            error: None,
        })
    }

    fn write(out: &mut Option<Writer>, error: &mut Option<io::Error>, r: &UdpRecord) {
        if let Some(w) = out.as_mut()
            && error.is_none()
            && let Err(e) = w.write(r)
        {
            *error = Some(e);
        }
    }

    pub fn on_datagram(&mut self, d: &Datagram) {
        let (out, error) = (&mut self.out, &mut self.error);
        self.table
            .on_datagram(d, &mut |r| Self::write(out, error, r));
    }

    /// End of input: the flows still open, then the file completed.
    pub fn finish(&mut self) -> Result<(), String> {
        let (out, error) = (&mut self.out, &mut self.error);
        self.table.finish(&mut |r| Self::write(out, error, r));
        if let Some(w) = self.out.as_mut()
            && self.error.is_none()
            && let Err(e) = w.finish()
        {
            self.error = Some(e);
        }
        match &self.error {
            Some(e) if !crate::pipe::is_broken(e) => Err(format!("writing the UDP flows: {e}")),
            _ => Ok(()),
        }
    }

    /// The protocols seen, most flows first (ties by name).
    fn protocols(&self) -> Vec<(&'static str, u64)> {
        let st = self.table.stats();
        let mut v: Vec<_> = Proto::ALL
            .iter()
            .zip(st.by_proto)
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| (p.name(), n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// The summary's lines.
    pub fn render(&self) -> String {
        let st = self.table.stats();
        let mut t = format!(
            "\nUDP flows: {} ({} datagrams)",
            thousands(st.flows),
            thousands(st.datagrams)
        );
        let protos = self.protocols();
        if !protos.is_empty() {
            let list: Vec<String> = protos
                .iter()
                .map(|(p, n)| format!("{p} {}", thousands(*n)))
                .collect();
            t.push_str(&format!(", by protocol: {}", list.join(", ")));
        }
        t.push('\n');
        let quic = st.by_proto[Proto::ALL
            .iter()
            .position(|p| *p == Proto::Quic)
            .unwrap_or(0)];
        let versions: Vec<String> = st
            .quic_versions
            .iter()
            .map(|(v, n)| format!("{} {}", quic_version_name(*v), thousands(*n)))
            .collect();
        t.push_str(&format!(
            "  QUIC: {} flows{}\n",
            thousands(quic),
            if versions.is_empty() {
                String::new()
            } else {
                format!(" ({})", versions.join(", "))
            }
        ));
        if st.evicted > 0 {
            t.push_str(&format!(
                "  evicted {} UDP flows under memory pressure (--udp-max-flows {}): figures incomplete\n",
                thousands(st.evicted),
                thousands(self.max_flows as u64)
            ));
        }
        t
    }

    /// The summary's `udp` object.
    pub fn json(&self) -> serde_json::Value {
        let st = self.table.stats();
        let protocols: serde_json::Map<String, serde_json::Value> = self
            .protocols()
            .into_iter()
            .map(|(p, n)| (p.to_string(), n.into()))
            .collect();
        let versions: serde_json::Map<String, serde_json::Value> = st
            .quic_versions
            .iter()
            .map(|(v, n)| (quic_version_name(*v), (*n).into()))
            .collect();
        let quic = st.by_proto[Proto::ALL
            .iter()
            .position(|p| *p == Proto::Quic)
            .unwrap_or(0)];
        serde_json::json!({
            "flows": st.flows,
            "datagrams": st.datagrams,
            "evicted_flows": st.evicted,
            "peak_flows": st.peak_flows,
            "protocols": protocols,
            "quic": {"flows": quic, "versions": versions},
        })
    }
}
