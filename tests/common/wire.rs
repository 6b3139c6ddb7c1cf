//! Query bytes built by hand, for what a DNS library will not encode: malformed Client Subnet
//! options, EDNS padding to an exact length, a bare header, a compression pointer in the
//! question. The unit tests have the same builder in `src/dns/codec/test_query.rs`.
#![allow(dead_code)]

use std::net::IpAddr;

/// A query under construction: header, at most one question, at most one OPT record.
#[derive(Debug, Clone)]
pub struct WireQuery {
    id: u16,
    flags: u16,
    /// The question name on the wire, type and class; `None` for a bare header.
    question: Option<(Vec<u8>, u16, u16)>,
    /// QDCOUNT when it is not the number of questions written.
    questions: Option<u16>,
    opt: Option<Opt>,
}

#[derive(Debug, Clone)]
struct Opt {
    udp_size: u16,
    version: u8,
    flags: u16,
    options: Vec<u8>,
    /// The whole message's length, made up with a padding option (RFC 7830) last.
    padded_to: Option<usize>,
}

impl WireQuery {
    /// A query for `name` ("app.geo.example.", "" or "." for the root) and `qtype`, class IN,
    /// with no flags set.
    pub fn new(id: u16, name: &str, qtype: u16) -> Self {
        let mut wire = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        WireQuery { id, flags: 0, question: Some((wire, qtype, 1)), questions: None, opt: None }
    }

    /// A header with no question.
    pub fn header(id: u16) -> Self {
        WireQuery { id, flags: 0, question: None, questions: None, opt: None }
    }

    /// Header bytes 2 and 3 (0x0100 is RD).
    pub fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    /// The question name as given on the wire (a compression pointer, say), in place of the
    /// name's labels.
    pub fn raw_name(mut self, name: &[u8]) -> Self {
        if let Some(q) = &mut self.question {
            q.0 = name.to_vec();
        }
        self
    }

    pub fn class(mut self, class: u16) -> Self {
        if let Some(q) = &mut self.question {
            q.2 = class;
        }
        self
    }

    /// The question count written in the header, whatever follows it.
    pub fn questions(mut self, count: u16) -> Self {
        self.questions = Some(count);
        self
    }

    /// An OPT record with this UDP payload size (version 0, no flags, no options).
    pub fn edns(mut self, udp_size: u16) -> Self {
        self.opt = Some(Opt { udp_size, version: 0, flags: 0, options: Vec::new(), padded_to: None });
        self
    }

    fn opt(&mut self) -> &mut Opt {
        self.opt.get_or_insert(Opt { udp_size: 1232, version: 0, flags: 0, options: Vec::new(), padded_to: None })
    }

    pub fn dnssec_ok(mut self) -> Self {
        self.opt().flags |= 0x8000;
        self
    }

    pub fn edns_version(mut self, version: u8) -> Self {
        self.opt().version = version;
        self
    }

    /// An EDNS option as given (an OPT record of size 1232 is added if there is none).
    pub fn option(mut self, code: u16, data: &[u8]) -> Self {
        let options = &mut self.opt().options;
        options.extend_from_slice(&code.to_be_bytes());
        options.extend_from_slice(&(data.len() as u16).to_be_bytes());
        options.extend_from_slice(data);
        self
    }

    /// A Client Subnet option exactly as given, valid or not.
    pub fn ecs(self, family: u16, source: u8, scope: u8, address: &[u8]) -> Self {
        let mut data = family.to_be_bytes().to_vec();
        data.extend_from_slice(&[source, scope]);
        data.extend_from_slice(address);
        self.option(8, &data)
    }

    /// A valid Client Subnet option for `address`/`prefix` (the address octets the prefix needs).
    pub fn subnet(self, address: IpAddr, prefix: u8) -> Self {
        let octets = usize::from(prefix).div_ceil(8);
        match address {
            IpAddr::V4(a) => self.ecs(1, prefix, 0, &a.octets()[..octets]),
            IpAddr::V6(a) => self.ecs(2, prefix, 0, &a.octets()[..octets]),
        }
    }

    /// Pads the message to `len` bytes with an EDNS padding option (an OPT record of size 1232
    /// is added if there is none).
    pub fn padded_to(mut self, len: usize) -> Self {
        self.opt().padded_to = Some(len);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut m = self.id.to_be_bytes().to_vec();
        m.extend_from_slice(&self.flags.to_be_bytes());
        let qd = self.questions.unwrap_or(u16::from(self.question.is_some()));
        m.extend_from_slice(&qd.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, u8::from(self.opt.is_some())]);
        if let Some((name, qtype, class)) = &self.question {
            m.extend_from_slice(name);
            m.extend_from_slice(&qtype.to_be_bytes());
            m.extend_from_slice(&class.to_be_bytes());
        }
        if let Some(opt) = &self.opt {
            let mut options = opt.options.clone();
            if let Some(len) = opt.padded_to {
                // The OPT record's fixed 11 bytes and the padding option's own 4.
                let padding = len - m.len() - 11 - options.len() - 4;
                options.extend_from_slice(&12u16.to_be_bytes());
                options.extend_from_slice(&u16::try_from(padding).expect("padding fits").to_be_bytes());
                options.resize(options.len() + padding, 0);
            }
            m.extend_from_slice(&[0, 0, 41]);
            m.extend_from_slice(&opt.udp_size.to_be_bytes());
            m.extend_from_slice(&[0, opt.version]);
            m.extend_from_slice(&opt.flags.to_be_bytes());
            m.extend_from_slice(&u16::try_from(options.len()).expect("options fit").to_be_bytes());
            m.extend_from_slice(&options);
        }
        m
    }
}
