//! The unit tests' routing table and handler: config/example.yaml with its bundled database.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Handler;
use crate::config::Config;
use crate::geoip::GeoIpDb;
use crate::routing::{Built, Inputs, RankTables, Rankings, build_with};

/// The example config's table, with `inputs` (sites down, ...).
pub fn example_table(inputs: &Inputs) -> Built {
    example_table_with(inputs, |_| {})
}

/// [`example_table`] of the example config as `edit` leaves it.
pub fn example_table_with(inputs: &Inputs, edit: impl FnOnce(&mut Config)) -> Built {
    let mut config = crate::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml")).unwrap();
    edit(&mut config);
    table_of(&config, inputs)
}

/// The example config with two more geo names (`pool`: max_answers 3 over sites of one and
/// two addresses; `drop`: all_down nodata), as text.
pub fn example_config_text() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(dir.join("example.yaml")).unwrap();
    let more = "    geo:\n      pool:\n        max_answers: 3\n        sites:\n          london: [192.0.2.11, 192.0.2.12]\n          \
                frankfurt: [192.0.2.21]\n          seattle: [192.0.2.31, \"2001:db8::31\"]\n          \
                singapore: [192.0.2.41]\n      drop:\n        all_down: nodata\n        sites:\n          \
                london: [192.0.2.51]\n          frankfurt: [\"2001:db8::52\"]\n";
    text.replacen("    geo:\n", more, 1)
}

/// The table of `config` (whose GeoIP database must be set), rank tables filled.
fn table_of(config: &crate::config::Config, inputs: &Inputs) -> Built {
    let db: Arc<GeoIpDb> = Arc::new(GeoIpDb::open(config.geoip.as_ref().unwrap()).unwrap());
    let ranks = RankTables::new();
    let built = build_with(config, db.clone(), Some(&ranks), None, Arc::new(inputs.clone()), 1);
    // As the app does: the rank tables the build asked for, built before answering.
    for slot in ranks.pending() {
        slot.fill(Rankings::build(&*db, &slot.sites()));
    }
    built
}

/// A handler serving [`example_table`] with every site up.
pub fn example_handler() -> Handler {
    Handler::new(Arc::new(ArcSwap::new(example_table(&Inputs::default()).into_table())))
}
