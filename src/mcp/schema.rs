//! Tool argument specifications: one table per tool from which both the
//! advertised JSON Schema (`inputSchema`) and the server-side validation
//! are derived, so the two cannot disagree.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub enum Kind {
    String {
        min_len: usize,
        /// When set, the value must be one of these.
        one_of: Option<Vec<String>>,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
    /// An object whose values are all strings (labels).
    StringMap,
    /// An array of strings.
    StringList,
}

/// One named argument of a tool.
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    /// None means the argument is required; `Some(Value::Null)` means it
    /// is optional without a default (and may be given as null).
    pub default: Option<Value>,
}

impl Kind {
    /// A non-empty string.
    pub fn text() -> Kind {
        Kind::String {
            min_len: 1,
            one_of: None,
        }
    }

    /// A string, possibly empty.
    pub fn any_text() -> Kind {
        Kind::String {
            min_len: 0,
            one_of: None,
        }
    }

    /// One of `values`.
    pub fn one_of(values: Vec<String>) -> Kind {
        Kind::String {
            min_len: 1,
            one_of: Some(values),
        }
    }

    pub fn int(min: i64, max: i64) -> Kind {
        Kind::Integer { min, max }
    }
}

impl Arg {
    /// An argument the caller must give.
    pub fn required(name: &'static str, description: &'static str, kind: Kind) -> Arg {
        Arg {
            name,
            description,
            kind,
            default: None,
        }
    }

    /// A non-empty string the caller must give.
    pub fn required_text(name: &'static str, description: &'static str) -> Arg {
        Arg::required(name, description, Kind::text())
    }

    /// An argument that may be left out (or given as null); no default.
    pub fn optional(name: &'static str, description: &'static str, kind: Kind) -> Arg {
        Arg {
            name,
            description,
            kind,
            default: Some(Value::Null),
        }
    }

    /// An argument that is `default` when left out.
    pub fn with_default(
        name: &'static str,
        description: &'static str,
        kind: Kind,
        default: Value,
    ) -> Arg {
        Arg {
            name,
            description,
            kind,
            default: Some(default),
        }
    }

    fn schema(&self) -> Value {
        let mut s = Map::new();
        match &self.kind {
            Kind::String { min_len, one_of } => {
                s.insert("type".into(), json!("string"));
                if *min_len > 0 {
                    s.insert("minLength".into(), json!(min_len));
                }
                if let Some(values) = one_of {
                    s.insert("enum".into(), json!(values));
                }
            }
            Kind::Integer { min, max } => {
                s.insert("type".into(), json!("integer"));
                s.insert("minimum".into(), json!(min));
                s.insert("maximum".into(), json!(max));
            }
            Kind::Boolean => {
                s.insert("type".into(), json!("boolean"));
            }
            Kind::StringMap => {
                s.insert("type".into(), json!("object"));
                s.insert("additionalProperties".into(), json!({"type": "string"}));
            }
            Kind::StringList => {
                s.insert("type".into(), json!("array"));
                s.insert("items".into(), json!({"type": "string"}));
            }
        }
        s.insert("description".into(), json!(self.description));
        if let Some(d) = self.default.as_ref().filter(|d| !d.is_null()) {
            s.insert("default".into(), d.clone());
        }
        Value::Object(s)
    }

    /// Checks one value; the error names the argument and says what fits.
    fn check(&self, v: &Value) -> Result<(), String> {
        let name = self.name;
        if v.is_null() && self.default == Some(Value::Null) {
            return Ok(());
        }
        match &self.kind {
            Kind::String { min_len, one_of } => {
                let Some(s) = v.as_str() else {
                    return Err(format!("{name} must be a string, got {}", describe(v)));
                };
                if s.chars().count() < *min_len {
                    return Err(format!("{name} must not be empty"));
                }
                if let Some(values) = one_of {
                    if !values.iter().any(|x| x == s) {
                        return Err(format!(
                            "{name} must be one of {}, got {s:?}",
                            values.join(", ")
                        ));
                    }
                }
            }
            Kind::Integer { min, max } => {
                let n = v.as_i64().or_else(|| {
                    // 4.0 is an integer in JSON Schema; 4.5 is not.
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                });
                match n {
                    Some(n) if (*min..=*max).contains(&n) => {}
                    _ => {
                        return Err(format!(
                            "{name} must be an integer from {min} to {max}, got {}",
                            describe(v)
                        ))
                    }
                }
            }
            Kind::Boolean => {
                if !v.is_boolean() {
                    return Err(format!("{name} must be true or false, got {}", describe(v)));
                }
            }
            Kind::StringMap => {
                let ok = v
                    .as_object()
                    .is_some_and(|o| o.values().all(Value::is_string));
                if !ok {
                    return Err(format!(
                        "{name} must be an object of string values, got {}",
                        describe(v)
                    ));
                }
            }
            Kind::StringList => {
                let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
                if !ok {
                    return Err(format!(
                        "{name} must be an array of strings, got {}",
                        describe(v)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "an object".into(),
    };
    let mut text = v.to_string();
    if text.len() > 40 {
        text.truncate(40);
        text.push('…');
    }
    format!("{kind} {text}")
}

/// The `inputSchema` of a tool taking `args`.
pub fn object_schema(args: &[Arg]) -> Value {
    let props: Map<String, Value> = args
        .iter()
        .map(|a| (a.name.to_string(), a.schema()))
        .collect();
    let required: Vec<&str> = args
        .iter()
        .filter(|a| a.default.is_none())
        .map(|a| a.name)
        .collect();
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// An `outputSchema`: an object with `fields` (name, JSON Schema) all
/// required, open to more. Clients validate results against it, and an
/// added field must not break them.
pub fn output_object(fields: Vec<(&str, Value)>) -> Value {
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    let props: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": true})
}

/// [`output_object`] with fields given by their JSON type name alone.
pub fn output_types(fields: &[(&str, &str)]) -> Value {
    output_object(
        fields
            .iter()
            .map(|(k, t)| (*k, json!({"type": t})))
            .collect(),
    )
}

/// Validates `given` against `args` and returns it with defaults filled
/// in. All problems are reported at once, so a model can fix them in one go.
pub fn validate(args: &[Arg], given: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut problems = Vec::new();
    for key in given.keys() {
        if !args.iter().any(|a| a.name == key) {
            let names: Vec<&str> = args.iter().map(|a| a.name).collect();
            problems.push(format!(
                "unknown argument {key:?} (accepted: {})",
                names.join(", ")
            ));
        }
    }
    let mut out = Map::new();
    for a in args {
        match (given.get(a.name), &a.default) {
            (Some(v), _) => match a.check(v) {
                Ok(()) => {
                    out.insert(a.name.into(), v.clone());
                }
                Err(e) => problems.push(e),
            },
            (None, Some(d)) => {
                out.insert(a.name.into(), d.clone());
            }
            (None, None) => problems.push(format!("missing required argument {:?}", a.name)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Vec<Arg> {
        vec![
            Arg {
                name: "env",
                description: "which",
                kind: Kind::String {
                    min_len: 1,
                    one_of: Some(vec!["a".into(), "b".into()]),
                },
                default: None,
            },
            Arg {
                name: "n",
                description: "count",
                kind: Kind::Integer { min: 1, max: 8 },
                default: Some(json!(1)),
            },
            Arg {
                name: "flag",
                description: "switch",
                kind: Kind::Boolean,
                default: Some(json!(false)),
            },
        ]
    }

    #[test]
    fn schema_is_closed_and_lists_required() {
        let s = object_schema(&args());
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"], json!(["env"]));
        assert_eq!(s["properties"]["n"]["maximum"], 8);
        assert_eq!(s["properties"]["env"]["enum"], json!(["a", "b"]));
        assert_eq!(s["properties"]["flag"]["default"], false);
    }

    #[test]
    fn fills_defaults_and_accepts_integral_floats() {
        let given = json!({"env": "a", "n": 4.0});
        let got = validate(&args(), given.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"env": "a", "n": 4.0, "flag": false})
        );
    }

    #[test]
    fn optional_maps_and_lists() {
        let args = vec![
            Arg {
                name: "labels",
                description: "labels",
                kind: Kind::StringMap,
                default: Some(Value::Null),
            },
            Arg {
                name: "keys",
                description: "keys",
                kind: Kind::StringList,
                default: Some(Value::Null),
            },
        ];
        let s = object_schema(&args);
        assert_eq!(s["required"], json!([]));
        assert!(s["properties"]["labels"].get("default").is_none());
        assert_eq!(s["properties"]["keys"]["items"]["type"], "string");
        let got = validate(
            &args,
            json!({"labels": {"a": "b"}, "keys": null})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            Value::Object(got.unwrap()),
            json!({"labels": {"a": "b"}, "keys": null})
        );
        let e = validate(
            &args,
            json!({"labels": {"a": 1}, "keys": [2]})
                .as_object()
                .unwrap(),
        )
        .unwrap_err();
        assert!(
            e.contains("object of string values") && e.contains("array of strings"),
            "{e}"
        );
    }

    #[test]
    fn reports_every_problem() {
        let given = json!({"n": "two", "flag": 1, "extra": true});
        let e = validate(&args(), given.as_object().unwrap()).unwrap_err();
        for part in [
            "unknown argument \"extra\"",
            "missing required argument \"env\"",
            "n must be an integer from 1 to 8, got string \"two\"",
            "flag must be true or false",
        ] {
            assert!(e.contains(part), "{e}");
        }
        let e = validate(&args(), json!({"env": "c"}).as_object().unwrap()).unwrap_err();
        assert!(e.contains("env must be one of a, b"), "{e}");
        let e = validate(&args(), json!({"env": "a", "n": 9}).as_object().unwrap()).unwrap_err();
        assert!(e.contains("from 1 to 8, got number 9"), "{e}");
    }
}
