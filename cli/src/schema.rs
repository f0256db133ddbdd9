//! The JSON Schema of the config file (`promote config schema`): the top-level settings
//! (schemars, from [`Settings`]), each registered backend kind's table (from the registry, so a
//! new kind is described once, by its own crate), and profiles (any other top-level table holds
//! the same settings).

use serde_json::{Value, json};

use crate::backends;
use crate::settings::Settings;

/// The schema, draft 2020-12.
pub(crate) fn schema() -> Value {
    let mut settings = schemars::schema_for!(Settings).to_value();
    let defs = settings.as_object_mut().and_then(|o| o.remove("$defs")).unwrap_or_else(|| json!({}));
    let mut defs = match defs {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let mut kinds = Vec::new();
    for (kind, mut table) in backends::registry().schemas() {
        // Each kind's own definitions move up to the top, under the kind's name.
        if let Some(Value::Object(own)) = table.as_object_mut().and_then(|o| o.remove("$defs")) {
            for (name, def) in own {
                defs.insert(name, def);
            }
        }
        if let Some(o) = table.as_object_mut() {
            o.remove("$schema");
            // A table names its kind; the kind's default applies only to `[backend]`.
            o.insert("required".into(), json!(["kind"]));
            if let Some(props) = o.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("kind".into(), json!({ "const": kind }));
            }
        }
        let name = format!("backend-{kind}");
        defs.insert(name.clone(), table);
        kinds.push(json!({ "$ref": format!("#/$defs/{name}") }));
    }
    defs.insert(
        "Backend".into(),
        json!({ "description": "A backend table; `kind` picks the plugin.", "oneOf": kinds }),
    );
    if let Some(props) = settings.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "backend".into(),
            json!({ "$ref": "#/$defs/Backend", "description": "The unnamed backend, used when no target is named." }),
        );
        props.insert(
            "targets".into(),
            json!({
                "type": "object",
                "description": "Named backends: [targets.NAME], chosen with --target / PROMOTE_TARGET / default_target.",
                "additionalProperties": { "$ref": "#/$defs/Backend" }
            }),
        );
    }
    let mut profile = settings.clone();
    if let Some(o) = profile.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
        o.insert(
            "description".into(),
            json!(
                "A profile ([default], [dev], [prod], …): the same settings, chosen with --profile / PROMOTE_PROFILE."
            ),
        );
    }
    defs.insert("Profile".into(), profile);
    if let Some(o) = settings.as_object_mut() {
        o.insert("title".into(), json!("promote.toml"));
        o.insert("additionalProperties".into(), json!({ "$ref": "#/$defs/Profile" }));
        o.insert("$defs".into(), Value::Object(defs));
    }
    settings
}
