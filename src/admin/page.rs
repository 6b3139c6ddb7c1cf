//! The status page at `/`: sites on a world map, their health, the endpoints behind them, and
//! every geo name with the sites it is answered from. It polls `/status` every two seconds.
//!
//! Self-contained: no external fetches. The map is an inline SVG in the equirectangular
//! projection (x = (longitude + 180) * 2, y = (90 - latitude) * 2 in a 720 x 360 box): coarse
//! coastlines drawn once in `page.html`, and the sites drawn from their coordinates by the
//! script, each a `<g data-site=NAME data-health=up|down>`, with labels moved apart where sites
//! are close.

/// The page itself lives in `page.html` beside this file (HTML, CSS and script in one file, so
/// that the status page needs no second request), compiled into the binary.
pub const PAGE: &str = include_str!("page.html");
