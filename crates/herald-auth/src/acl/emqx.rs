//! EMQX 4.x `acl.conf`: Erlang terms, one rule per term, each ended by `.`:
//! `{allow | deny, Who, publish | subscribe | pubsub, Topics}.` and
//! `{allow | deny, all}.`; Who is `all`, `{user, "u"}`, `{client, "c"}`,
//! `{ipaddr, "10.0.0.0/8"}`, `{ipaddrs, [...]}`, `{'and', [...]}`,
//! `{'or', [...]}`; Topics a list of strings (with `%c` / `%u`) and
//! `{eq, "t"}`. Strings may be written `"t"` or `<<"t">>`; `%` starts a
//! comment outside strings.

use super::{Acl, Actions, Rule, Topic, Who};
use herald_broker::router::valid_topic_filter;
use std::net::IpAddr;

/// An Erlang term, as much of it as acl.conf uses.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Atom(String),
    Str(String),
    Tuple(Vec<Term>),
    List(Vec<Term>),
}

struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn skip_space(&mut self) {
        while let Some(&b) = self.text.get(self.pos) {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b'%' => {
                    while self.text.get(self.pos).is_some_and(|&b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                b if b.is_ascii_whitespace() => self.pos += 1,
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, want: u8) -> Result<(), (usize, String)> {
        match self.peek() {
            Some(b) if b == want => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err((
                self.line,
                format!("expected '{}', found '{}'", want as char, b as char),
            )),
            None => Err((
                self.line,
                format!("expected '{}', found the end", want as char),
            )),
        }
    }

    fn string(&mut self, quote: u8) -> Result<String, (usize, String)> {
        let start_line = self.line;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.text.get(self.pos).copied() {
                None => return Err((start_line, "unterminated string".into())),
                Some(b) if b == quote => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let next = self.text.get(self.pos + 1).copied();
                    let Some(next) = next else {
                        return Err((start_line, "unterminated string".into()));
                    };
                    out.push(match next {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                    self.pos += 2;
                }
                Some(b) => {
                    if b == b'\n' {
                        self.line += 1;
                    }
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| (start_line, "string is not UTF-8".into()))
    }

    fn term(&mut self) -> Result<Term, (usize, String)> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                Ok(Term::Tuple(self.items(b'}')?))
            }
            Some(b'[') => {
                self.pos += 1;
                Ok(Term::List(self.items(b']')?))
            }
            Some(b'"') => Ok(Term::Str(self.string(b'"')?)),
            Some(b'\'') => Ok(Term::Atom(self.string(b'\'')?)),
            Some(b'<') => {
                self.expect(b'<')?;
                self.expect(b'<')?;
                let s = match self.peek() {
                    Some(b'"') => self.string(b'"')?,
                    _ => return Err((self.line, "expected a string in <<\"...\">>".into())),
                };
                self.expect(b'>')?;
                self.expect(b'>')?;
                Ok(Term::Str(s))
            }
            Some(b) if b.is_ascii_lowercase() => {
                let start = self.pos;
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'@')
                {
                    self.pos += 1;
                }
                let atom = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
                Ok(Term::Atom(atom))
            }
            Some(b) => Err((self.line, format!("unexpected '{}'", b as char))),
            None => Err((self.line, "unexpected end of file".into())),
        }
    }

    fn items(&mut self, close: u8) -> Result<Vec<Term>, (usize, String)> {
        let mut items = Vec::new();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.term()?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b) if b == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {
                    return Err((self.line, format!("expected ',' or '{}'", close as char)));
                }
            }
        }
    }
}

pub(super) fn parse(text: &str) -> Result<Acl, (usize, String)> {
    let mut lx = Lexer {
        text: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut rules = Vec::new();
    while lx.peek().is_some() {
        let line = lx.line;
        let term = lx.term()?;
        // A missing `.` is the fault of the rule's last line, not of
        // whatever follows it.
        let end = lx.line;
        lx.expect(b'.')
            .map_err(|(_, why)| (end, format!("{why} (each rule ends with '.')")))?;
        rules.push(rule(term, line).map_err(|why| (line, why))?);
    }
    Ok(Acl { rules })
}

fn rule(term: Term, line: usize) -> Result<Rule, String> {
    let Term::Tuple(items) = term else {
        return Err("a rule is a tuple {allow|deny, Who, Action, Topics}".into());
    };
    let allow = match items.first() {
        Some(Term::Atom(a)) if a == "allow" => true,
        Some(Term::Atom(a)) if a == "deny" => false,
        _ => return Err("a rule starts with allow or deny".into()),
    };
    match &items[1..] {
        [who] => Ok(Rule {
            allow,
            who: parse_who(who)?,
            actions: Actions::ALL,
            topics: Vec::new(),
            line,
        }),
        [who, action, Term::List(topics)] => {
            let actions = match action {
                Term::Atom(a) if a == "publish" => Actions {
                    publish: true,
                    subscribe: false,
                },
                Term::Atom(a) if a == "subscribe" => Actions {
                    publish: false,
                    subscribe: true,
                },
                Term::Atom(a) if a == "pubsub" => Actions::ALL,
                _ => return Err("the action is publish, subscribe or pubsub".into()),
            };
            let topics = topics.iter().map(topic).collect::<Result<Vec<_>, _>>()?;
            if topics.is_empty() {
                return Err("the topic list is empty".into());
            }
            Ok(Rule {
                allow,
                who: parse_who(who)?,
                actions,
                topics,
                line,
            })
        }
        _ => Err("a rule is {allow|deny, Who, Action, [Topics]} or {allow|deny, all}".into()),
    }
}

fn topic(t: &Term) -> Result<Topic, String> {
    match t {
        Term::Str(s) if valid_topic_filter(s) => Ok(Topic::Filter(s.clone())),
        Term::Str(s) => Err(format!("{s:?} is not a topic filter")),
        Term::Tuple(eq) => match eq.as_slice() {
            [Term::Atom(a), Term::Str(s)] if a == "eq" => Ok(Topic::Eq(s.clone())),
            _ => Err("a topic is a string or {eq, \"topic\"}".into()),
        },
        _ => Err("a topic is a string or {eq, \"topic\"}".into()),
    }
}

fn parse_who(t: &Term) -> Result<Who, String> {
    match t {
        Term::Atom(a) if a == "all" => Ok(Who::All),
        Term::Tuple(pair) => match pair.as_slice() {
            [Term::Atom(k), Term::Str(v)] if k == "user" => Ok(Who::User(v.clone())),
            [Term::Atom(k), Term::Str(v)] if k == "client" => Ok(Who::Client(v.clone())),
            [Term::Atom(k), Term::Str(v)] if k == "ipaddr" => net(v),
            [Term::Atom(k), Term::List(v)] if k == "ipaddrs" => Ok(Who::Or(
                v.iter()
                    .map(|t| match t {
                        Term::Str(s) => net(s),
                        _ => Err("ipaddrs holds strings".to_string()),
                    })
                    .collect::<Result<_, _>>()?,
            )),
            [Term::Atom(k), Term::List(v)] if k == "and" => Ok(Who::And(
                v.iter().map(parse_who).collect::<Result<_, _>>()?,
            )),
            [Term::Atom(k), Term::List(v)] if k == "or" => Ok(Who::Or(
                v.iter().map(parse_who).collect::<Result<_, _>>()?,
            )),
            _ => Err("Who is all, {user, _}, {client, _}, {ipaddr, _}, {ipaddrs, [..]}, {'and', [..]} or {'or', [..]}".into()),
        },
        _ => Err("Who is all or a tuple such as {user, \"name\"}".into()),
    }
}

/// `"10.0.0.1"` or `"10.0.0.0/8"`.
fn net(text: &str) -> Result<Who, String> {
    let (ip, bits) = match text.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
    };
    Ok(Who::Net(ip, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_emqx_default_parses() {
        let text = r##"
%%--------------------------------------------------------------------
%% [ACL](https://docs.emqx.io/broker/v3/en/config.html)
%%--------------------------------------------------------------------
{allow, {user, "dashboard"}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "127.0.0.1"}, pubsub, ["$SYS/#", "#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, all}.
"##;
        let acl = parse(text).unwrap();
        assert_eq!(acl.rules.len(), 4);
        assert_eq!(acl.rules[3].line, 8);
        assert_eq!(acl.rules[2].topics[1], Topic::Eq("#".into()));
    }

    #[test]
    fn errors_name_the_line() {
        let err =
            parse("{allow, all}.\n\n{allow, {user, \"x\"}, publish, [\"a/#/b\"]}.\n").unwrap_err();
        assert_eq!(err.0, 3);
        assert!(err.1.contains("not a topic filter"), "{}", err.1);
        assert_eq!(parse("{allow, all}\n").unwrap_err().0, 1);
        assert_eq!(parse("{maybe, all}.").unwrap_err().0, 1);
        assert_eq!(
            parse("{allow, {ipaddr, \"10.0.0.0/40\"}, publish, [\"a\"]}.")
                .unwrap_err()
                .0,
            1
        );
        assert!(parse("{allow, {user, <<\"b\">>}, pubsub, [<<\"t/%u\">>]}.").is_ok());
    }
}
