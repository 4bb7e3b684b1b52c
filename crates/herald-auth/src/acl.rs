//! ACL rules, read from a mosquitto `acl_file` or an EMQX 4.x `acl.conf`
//! (told apart by content: EMQX's is Erlang terms, `{allow, ...}.`), and
//! evaluated per client.
//!
//! Evaluation: the rules that apply to a client (its user, client id,
//! address, or everyone) are compiled once when it connects, with `%c` and
//! `%u` substituted; a check walks that short list, first match wins, and
//! remembers its answer per topic. No rule matching gives `acl.nomatch`.
//!
//! The two formats keep their own meaning:
//! - EMQX: first match in file order, as EMQX does.
//! - mosquitto: mosquitto checks `deny` lines before any grant, so a file
//!   written for it (`topic read #` then `topic deny secret/#`) keeps its
//!   meaning here: its rules are ordered denies first (the client's own
//!   section, then patterns), then grants (section, then patterns); first
//!   match wins in that order, so any matching `deny` wins over any grant. Lines before any `user` line apply to
//!   anonymous clients only, as in mosquitto.
//!
//! A SUBSCRIBE filter matches a rule only if the rule covers every topic
//! the filter can receive (`secret/#` does not decide `#`); whatever the
//! subscription then receives is checked per message at delivery.

mod emqx;
mod mosquitto;

use herald_broker::hooks::{AclAction, ClientInfo};
use herald_broker::router::{covers, matches};
use std::net::IpAddr;
use std::path::Path;

/// Who a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Every client.
    All,
    /// Clients without a user name (mosquitto: lines before any `user`).
    Anonymous,
    /// This user name.
    User(String),
    /// This client id.
    Client(String),
    /// Peer addresses in this network.
    Net(IpAddr, u8),
    /// All of these.
    And(Vec<Who>),
    /// Any of these.
    Or(Vec<Who>),
}

impl Who {
    fn applies(&self, c: &ClientInfo) -> bool {
        match self {
            Who::All => true,
            Who::Anonymous => c.username.is_none(),
            Who::User(u) => c.username.as_deref() == Some(u.as_str()),
            Who::Client(id) => &*c.client_id == id.as_str(),
            Who::Net(net, bits) => in_net(c.peer.ip(), *net, *bits),
            Who::And(all) => all.iter().all(|w| w.applies(c)),
            Who::Or(any) => any.iter().any(|w| w.applies(c)),
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(bits.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(bits.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// What actions a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    /// PUBLISH (mosquitto `write`).
    pub publish: bool,
    /// SUBSCRIBE and receiving (mosquitto `read`).
    pub subscribe: bool,
}

impl Actions {
    const ALL: Actions = Actions {
        publish: true,
        subscribe: true,
    };

    fn includes(self, action: AclAction) -> bool {
        match action {
            AclAction::Publish => self.publish,
            AclAction::Subscribe | AclAction::Deliver => self.subscribe,
        }
    }
}

/// A topic of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// A filter, possibly with `%c` / `%u`.
    Filter(String),
    /// EMQX `{eq, T}`: equal as strings (a subscription to exactly `T`).
    Eq(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow (`true`) or deny.
    pub allow: bool,
    /// Who it applies to.
    pub who: Who,
    /// Which actions.
    pub actions: Actions,
    /// Topics; an empty list matches every topic (EMQX `{allow, all}.`).
    pub topics: Vec<Topic>,
    /// 1-based line in the file, for messages.
    pub line: usize,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
}

/// Which format a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// mosquitto `acl_file`.
    Mosquitto,
    /// EMQX 4.x `acl.conf`.
    Emqx,
}

impl Acl {
    /// Reads `path`; errors are `file:line: problem`.
    pub fn load(path: &Path) -> Result<(Acl, Format), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Acl::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    /// Parses a file, telling the format by its first meaningful character
    /// (`{` for EMQX's Erlang terms).
    pub fn parse(text: &str) -> Result<(Acl, Format), (usize, String)> {
        match detect(text) {
            Format::Emqx => emqx::parse(text).map(|a| (a, Format::Emqx)),
            Format::Mosquitto => mosquitto::parse(text).map(|a| (a, Format::Mosquitto)),
        }
    }

    /// The rules that apply to `client`, with `%c` / `%u` substituted.
    pub fn compile(&self, client: &ClientInfo) -> Vec<Compiled> {
        let mut out = Vec::new();
        for rule in &self.rules {
            if !rule.who.applies(client) {
                continue;
            }
            // A placeholder without a value (or one that would act as a
            // wildcard) makes that topic match nothing.
            let topics: Vec<Topic> = rule
                .topics
                .iter()
                .filter_map(|t| substitute(t, client))
                .collect();
            if topics.is_empty() && !rule.topics.is_empty() {
                continue;
            }
            out.push(Compiled {
                allow: rule.allow,
                actions: rule.actions,
                topics,
            });
        }
        out
    }
}

/// A rule as it applies to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    allow: bool,
    actions: Actions,
    /// Empty: every topic.
    topics: Vec<Topic>,
}

impl Compiled {
    /// `Some(allowed)` if this rule decides `action` on `topic`.
    pub fn decide(&self, action: AclAction, topic: &str) -> Option<bool> {
        if !self.actions.includes(action) {
            return None;
        }
        let hit = self.topics.is_empty()
            || self.topics.iter().any(|t| match t {
                Topic::Eq(t) => t == topic,
                Topic::Filter(f) if action == AclAction::Subscribe => covers(f, topic),
                Topic::Filter(f) => matches(f, topic),
            });
        hit.then_some(self.allow)
    }
}

/// First match in `rules`.
pub fn first_match(rules: &[Compiled], action: AclAction, topic: &str) -> Option<bool> {
    rules.iter().find_map(|r| r.decide(action, topic))
}

/// `%c` → client id, `%u` → user name. `None` when a placeholder has no
/// value or an empty one, or its value holds `+` or `#` (it would widen the
/// rule) or `/` (client `a/b` would reach into client `a`'s
/// `devices/a/#`).
fn substitute(topic: &Topic, c: &ClientInfo) -> Option<Topic> {
    let (text, eq) = match topic {
        Topic::Filter(t) => (t, false),
        Topic::Eq(t) => (t, true),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let value = match rest.get(i + 1..i + 2) {
            Some("c") => Some(&*c.client_id),
            Some("u") => Some(c.username.as_deref()?),
            _ => None,
        };
        match value {
            Some(v) => {
                if v.is_empty() || v.contains(['+', '#', '/']) {
                    return None;
                }
                out.push_str(v);
                rest = &rest[i + 2..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    Some(if eq {
        Topic::Eq(out)
    } else {
        Topic::Filter(out)
    })
}

fn detect(text: &str) -> Format {
    for line in text.lines() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('%') {
            continue;
        }
        return if t.starts_with('{') {
            Format::Emqx
        } else {
            Format::Mosquitto
        };
    }
    Format::Mosquitto
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use herald_codec::{ByteStr, Protocol};

    pub(crate) fn client(id: &str, user: Option<&str>, ip: &str) -> ClientInfo {
        ClientInfo {
            client_id: ByteStr::from(id),
            username: user.map(ByteStr::from),
            peer: format!("{ip}:1000").parse().unwrap(),
            protocol: Protocol::V5,
            keepalive: 30,
            clean_start: true,
            connected_at_ms: 0,
            listener: herald_broker::transport::ListenerKind::Tcp,
            cert: None,
        }
    }

    fn check(text: &str, c: &ClientInfo, action: AclAction, topic: &str) -> Option<bool> {
        let (acl, _) = Acl::parse(text).unwrap();
        first_match(&acl.compile(c), action, topic)
    }

    #[test]
    fn mosquitto_denies_before_grants_and_sections() {
        let text = "\
# anonymous clients
topic read public/#

user alice
topic readwrite #
topic deny secret/#

pattern write devices/%c/#
pattern read users/%u/#
";
        let alice = client("dev1", Some("alice"), "10.0.0.1");
        assert_eq!(
            check(text, &alice, AclAction::Deliver, "secret/a"),
            Some(false)
        );
        assert_eq!(
            check(text, &alice, AclAction::Publish, "secret/a"),
            Some(false)
        );
        assert_eq!(check(text, &alice, AclAction::Deliver, "x/y"), Some(true));
        // `#` is granted (readwrite # covers it); secret/ is filtered at delivery.
        assert_eq!(check(text, &alice, AclAction::Subscribe, "#"), Some(true));
        assert_eq!(
            check(text, &alice, AclAction::Subscribe, "secret/+"),
            Some(false)
        );
        let anon = client("dev2", None, "10.0.0.2");
        assert_eq!(
            check(text, &anon, AclAction::Deliver, "public/x"),
            Some(true)
        );
        assert_eq!(check(text, &anon, AclAction::Publish, "public/x"), None);
        assert_eq!(
            check(text, &anon, AclAction::Publish, "devices/dev2/t"),
            Some(true)
        );
        assert_eq!(
            check(text, &anon, AclAction::Publish, "devices/dev1/t"),
            None
        );
        // %u without a user name: the pattern matches nothing.
        assert_eq!(check(text, &anon, AclAction::Deliver, "users//x"), None);
        let bob = client("d+", Some("bob"), "10.0.0.3");
        assert_eq!(
            check(text, &bob, AclAction::Publish, "devices/x/t"),
            None,
            "%c holding + never widens"
        );
        for id in ["dev2/x", "#", ""] {
            let spoof = client(id, None, "10.0.0.4");
            assert_eq!(
                check(text, &spoof, AclAction::Publish, "devices/dev2/x/t"),
                None,
                "client id {id:?} never reaches into devices/dev2/#"
            );
            assert_eq!(
                check(text, &spoof, AclAction::Publish, "devices//t"),
                None,
                "client id {id:?}"
            );
        }
        assert_eq!(
            check(text, &bob, AclAction::Deliver, "users/bob/x"),
            Some(true)
        );
        assert_eq!(
            check(text, &bob, AclAction::Deliver, "public/x"),
            None,
            "anonymous section"
        );
    }

    #[test]
    fn emqx_first_match_in_file_order() {
        let text = r##"
%% comment
{allow, {user, "dashboard"}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "127.0.0.1"}, pubsub, ["$SYS/#", "#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, {client, "dev1"}, publish, ["devices/%c/#"]}.
{deny, {user, "eve"}, pubsub, ["#"]}.
{allow, all}.
"##;
        let local = client("x", None, "127.0.0.1");
        assert_eq!(check(text, &local, AclAction::Subscribe, "#"), Some(true));
        let remote = client("x", None, "10.1.1.1");
        assert_eq!(check(text, &remote, AclAction::Subscribe, "#"), Some(false));
        assert_eq!(
            check(text, &remote, AclAction::Subscribe, "a/#"),
            Some(true)
        );
        let dash = client("d", Some("dashboard"), "10.1.1.1");
        assert_eq!(
            check(text, &dash, AclAction::Subscribe, "$SYS/#"),
            Some(true)
        );
        let dev = client("dev1", None, "10.1.1.1");
        assert_eq!(
            check(text, &dev, AclAction::Publish, "devices/dev1/a"),
            Some(true)
        );
        let eve = client("e", Some("eve"), "10.1.1.1");
        assert_eq!(check(text, &eve, AclAction::Publish, "a"), Some(false));
    }

    /// The commented example shipped in etc/ parses and means what its
    /// comments say.
    #[test]
    fn shipped_acl_conf() {
        let (acl, format) = Acl::parse(include_str!("../../../etc/acl.conf")).unwrap();
        assert_eq!(format, Format::Emqx);
        let remote = client("dev1", None, "10.1.1.1");
        let rules = acl.compile(&remote);
        let decide = |action, topic| first_match(&rules, action, topic);
        assert_eq!(decide(AclAction::Publish, "devices/dev1/t"), Some(true));
        assert_eq!(decide(AclAction::Publish, "devices/dev2/t"), Some(false));
        assert_eq!(decide(AclAction::Subscribe, "#"), Some(false));
        assert_eq!(decide(AclAction::Subscribe, "commands/dev2/x"), Some(false));
        assert_eq!(decide(AclAction::Deliver, "other/t"), Some(true));
        let local = client("x", None, "127.0.0.1");
        assert_eq!(
            first_match(&acl.compile(&local), AclAction::Subscribe, "#"),
            Some(true)
        );
    }

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_net(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!in_net(ip("11.1.2.3"), ip("10.0.0.0"), 8));
        assert!(in_net(ip("::ffff:10.1.2.3"), ip("10.1.2.3"), 32));
        assert!(in_net(ip("fe80::1"), ip("fe80::"), 10));
        assert!(in_net(ip("1.2.3.4"), ip("0.0.0.0"), 0));
    }
}
