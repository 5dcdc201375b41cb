//! The figures of one run, in the order they were measured: target/bench.json.

use serde_json::{Map, Value};

#[derive(Default)]
pub struct Figures(Map<String, Value>);

impl Figures {
    /// Keep `value` under `key`, to 3 decimals (NaN, a figure that could not be
    /// measured, becomes null).
    pub fn record(&mut self, key: &str, value: f64) {
        let rounded = (value * 1000.0).round() / 1000.0;
        self.0.insert(key.to_string(), Value::from(rounded));
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let text = serde_json::to_string_pretty(&self.0).map_err(|_| std::fmt::Error)?;
        writeln!(f, "{text}")
    }
}
