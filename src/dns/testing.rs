//! The unit tests' routing table and handler: config/example.yaml with its bundled database.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Handler;
use crate::geoip::GeoIpDb;
use crate::routing::{Inputs, RankTables, RoutingTable, build_with};

/// The example config's table, with `inputs` (sites down, ...).
pub fn example_table(inputs: &Inputs) -> RoutingTable {
    let config = crate::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml")).unwrap();
    let db: Arc<GeoIpDb> = Arc::new(GeoIpDb::open(config.geoip.as_ref().unwrap()).unwrap());
    let ranks = RankTables::new(db.clone(), true);
    build_with(&config, db, Some(&ranks), None, Arc::new(inputs.clone()), 1)
}

/// A handler serving [`example_table`] with every site up.
pub fn example_handler() -> Handler {
    Handler::new(Arc::new(ArcSwap::from_pointee(example_table(&Inputs::default()))))
}
