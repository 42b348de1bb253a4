//! Addresses with prefix lengths, as the file writes them (`198.51.100.10/24`).

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address with a prefix length, as in `198.51.100.10/24` or `2001:db8::10/64`. A bare
/// address means a host prefix (/32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Why a string is not a [`Prefix`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("`{0}` is not an IP address (write e.g. 198.51.100.10/24 or 2001:db8::10/64)")]
    Address(String),
    #[error("`{0}` has no valid prefix length after `/` (write e.g. /24 or /64)")]
    Length(String),
    #[error("prefix length /{len} is longer than {max} bits of an IPv{family} address in `{text}`")]
    TooLong {
        text: String,
        len: u8,
        max: u8,
        family: u8,
    },
}

impl Prefix {
    pub const fn new(addr: IpAddr, len: u8) -> Self {
        Self { addr, len }
    }

    /// The host prefix of `addr` (/32 or /128).
    pub const fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: max_len(addr),
        }
    }

    /// The default route destination of `addr`'s family (0.0.0.0/0 or ::/0).
    pub const fn default_for(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => Self::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
        }
    }

    pub const fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.len)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.len)).into()),
        }
    }

    /// Whether `ip` lies inside this prefix (false across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let m = mask32(self.len);
                u32::from(a) & m == u32::from(b) & m
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let m = mask128(self.len);
                u128::from(a) & m == u128::from(b) & m
            }
            _ => false,
        }
    }
}

const fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub(super) fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| PrefixError::Address(text.to_owned()))?;
        let max = max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .map_err(|_| PrefixError::Length(text.to_owned()))?,
            Some(_) => return Err(PrefixError::Length(text.to_owned())),
        };
        if len > max {
            return Err(PrefixError::TooLong {
                text: text.to_owned(),
                len,
                max,
                family: if addr.is_ipv4() { 4 } else { 6 },
            });
        }
        Ok(Self { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
