//! Fuzzes the Prometheus text and OpenMetrics parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::{TextFormat, TextOptions, parse_text};

fuzz_target!(|data: &[u8]| {
    let interner = model::Interner::new();
    for format in [TextFormat::Prometheus, TextFormat::OpenMetrics] {
        let opts = TextOptions {
            extra_labels: model::Labels::from_pairs([("job", "fuzz")]).unwrap(),
            ..TextOptions::new(format, 0)
        };
        let _ = parse_text(data, &opts, &interner);
    }
});
