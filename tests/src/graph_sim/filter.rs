//! The part of OData `$filter` the simulator understands: `eq`, `and`,
//! `or`, parentheses and `singleValueExtendedProperties/Any(v: …)`, over
//! string and boolean literals. Anything else is refused, as Graph refuses
//! filters it cannot run.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Colon,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            ' ' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1
            }
            '\'' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err("an unterminated string literal".into()),
                        Some('\'') if c.get(i + 1) == Some(&'\'') => {
                            lit.push('\'');
                            i += 2
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            lit.push(ch);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(lit));
            }
            _ => {
                let start = i;
                while i < c.len() && !matches!(c[i], ' ' | '(' | ')' | ':' | '\'') {
                    i += 1;
                }
                out.push(Tok::Word(c[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(String, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `collection/Any(var: inner)`; paths inside start with `var/`.
    Any(String, String, Box<Filter>),
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn expr(&mut self) -> Result<Filter, String> {
        let mut left = self.term()?;
        while self.peek() == Some(&Tok::Word("or".into())) {
            self.next();
            left = Filter::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }
    fn term(&mut self) -> Result<Filter, String> {
        let mut left = self.factor()?;
        while self.peek() == Some(&Tok::Word("and".into())) {
            self.next();
            left = Filter::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }
    fn factor(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    _ => Err("a missing ')'".into()),
                }
            }
            Some(Tok::Word(w)) => {
                if let Some(coll) = w.strip_suffix("/Any").or_else(|| w.strip_suffix("/any")) {
                    if self.next() != Some(Tok::Open) {
                        return Err("Any without '('".into());
                    }
                    let var = match self.next() {
                        Some(Tok::Word(v)) => v,
                        _ => return Err("Any without a variable".into()),
                    };
                    if self.next() != Some(Tok::Colon) {
                        return Err("Any without ':'".into());
                    }
                    let inner = self.expr()?;
                    if self.next() != Some(Tok::Close) {
                        return Err("Any without ')'".into());
                    }
                    return Ok(Filter::Any(coll.to_string(), var, Box::new(inner)));
                }
                if self.next() != Some(Tok::Word("eq".into())) {
                    return Err(format!("only 'eq' is supported after {w}"));
                }
                let v = match self.next() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(b)) if b == "true" => Value::Bool(true),
                    Some(Tok::Word(b)) if b == "false" => Value::Bool(false),
                    _ => return Err(format!("an unsupported literal after {w} eq")),
                };
                Ok(Filter::Eq(w, v))
            }
            t => Err(format!("unexpected {t:?}")),
        }
    }
}

pub fn parse(s: &str) -> Result<Filter, String> {
    let mut p = Parser {
        toks: lex(s)?,
        at: 0,
    };
    let f = p.expr()?;
    if p.at != p.toks.len() {
        return Err("trailing tokens".into());
    }
    Ok(f)
}

fn lookup<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(item, |v, seg| v.get(seg))
}

/// Whether `item` (a resource's JSON) passes `f`; extended property ids
/// compare without regard to case, as Exchange's do.
pub fn eval(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::Eq(path, want) => match lookup(item, path) {
            Some(Value::String(s)) if path.ends_with("/id") => {
                want.as_str().is_some_and(|w| w.eq_ignore_ascii_case(s))
            }
            Some(v) => v == want,
            None => false,
        },
        Filter::And(a, b) => eval(a, item) && eval(b, item),
        Filter::Or(a, b) => eval(a, item) || eval(b, item),
        Filter::Any(coll, var, inner) => {
            lookup(item, coll)
                .and_then(Value::as_array)
                .is_some_and(|els| {
                    els.iter().any(|e| {
                        let mut scope = serde_json::Map::new();
                        scope.insert(var.clone(), e.clone());
                        eval(inner, &Value::Object(scope))
                    })
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_over_extended_properties() {
        let f = parse("singleValueExtendedProperties/Any(ep: ep/id eq 'String {X} Name o' and ep/value eq 'a b''c')")
            .unwrap();
        let item = json!({ "singleValueExtendedProperties": [{ "id": "String {x} Name O", "value": "a b'c" }] });
        assert!(eval(&f, &item));
        let other = json!({ "singleValueExtendedProperties": [{ "id": "String {x} Name O", "value": "a b" }] });
        assert!(!eval(&f, &other));
        assert!(parse("subject ne 'x'").is_err());
        assert!(eval(
            &parse("id eq 'a' or id eq 'b'").unwrap(),
            &json!({ "id": "b" })
        ));
    }
}
