//! mosquitto's `acl_file`: `user <name>`, `topic [read|write|readwrite|deny]
//! <topic>`, `pattern [read|write|readwrite|deny] <topic>`, `#` comments.
//! `topic` lines before the first `user` line are for anonymous clients.

use super::{Acl, Actions, Rule, Topic, Who};
use herald_broker::router::valid_topic_filter;

pub(super) fn parse(text: &str) -> Result<Acl, (usize, String)> {
    let mut section = Who::Anonymous;
    // (deny, from a pattern line) → rules, each group in file order.
    let mut groups: [Vec<Rule>; 4] = Default::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let rest = rest.trim();
        match keyword {
            "user" => {
                if rest.is_empty() {
                    return Err((n, "user: a user name is needed".into()));
                }
                section = Who::User(rest.to_owned());
            }
            "topic" | "pattern" => {
                let (access, topic) = match rest.split_once([' ', '\t']) {
                    Some((a, t)) if matches!(a, "read" | "write" | "readwrite" | "deny") => {
                        (a, t.trim())
                    }
                    _ => ("readwrite", rest),
                };
                if topic.is_empty() {
                    return Err((n, format!("{keyword}: a topic is needed")));
                }
                if !valid_topic_filter(topic) {
                    return Err((n, format!("{keyword}: {topic:?} is not a topic filter")));
                }
                let deny = access == "deny";
                let actions = Actions {
                    publish: matches!(access, "write" | "readwrite" | "deny"),
                    subscribe: matches!(access, "read" | "readwrite" | "deny"),
                };
                let pattern = keyword == "pattern";
                let who = if pattern { Who::All } else { section.clone() };
                let group = match (deny, pattern) {
                    (true, false) => 0,
                    (true, true) => 1,
                    (false, false) => 2,
                    (false, true) => 3,
                };
                groups[group].push(Rule {
                    allow: !deny,
                    who,
                    actions,
                    topics: vec![Topic::Filter(topic.to_owned())],
                    line: n,
                });
            }
            other => {
                return Err((
                    n,
                    format!("unknown keyword {other:?} (expected user, topic or pattern)"),
                ));
            }
        }
    }
    Ok(Acl {
        rules: groups.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_line() {
        assert_eq!(parse("user\n").unwrap_err().0, 1);
        assert_eq!(parse("# c\ntopic read a/#/b\n").unwrap_err().0, 2);
        assert_eq!(parse("\n\nfoo bar\n").unwrap_err().0, 3);
        assert!(parse("topic read\n").is_ok(), "a topic named read");
    }

    #[test]
    fn access_defaults_to_readwrite() {
        let acl = parse("topic a/b\n").unwrap();
        assert_eq!(acl.rules[0].actions, Actions::ALL);
    }
}
