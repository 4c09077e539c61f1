//! Just enough of a BTF reader to find struct member offsets.
//!
//! Rust eBPF has no CO-RE relocations, so the kernel struct offsets the
//! programs need (`sock_common.skc_net`, `net.ns.inum`, ...) are looked up
//! here in `/sys/kernel/btf/vmlinux` and handed to the program as globals.
//! Format: `Documentation/bpf/btf.rst` in the kernel tree.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic or truncated header)")]
    BadHeader,
    #[error("BTF type section is truncated or has an unknown kind {0}")]
    BadType(u32),
    #[error("kernel BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("kernel BTF has no member `{member}` in `{path}`")]
    NoMember { path: String, member: String },
    #[error("`{0}` is a bitfield; netconn cannot read it")]
    Bitfield(String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset within the struct.
    bit_offset: u32,
    bitfield: bool,
}

#[derive(Debug, Clone)]
enum Type {
    /// struct or union
    Composite(Vec<Member>),
    /// typedef, const, volatile, restrict, type tag: refers to another type
    Alias(u32),
    Other,
}

/// Parsed type table of one BTF blob.
pub struct Btf {
    strings: Vec<u8>,
    /// Index `id - 1`.
    types: Vec<(u32, Type)>,
    structs_by_name: HashMap<String, u32>,
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::BadHeader)?;
        if magic != MAGIC {
            return Err(BtfError::BadHeader);
        }
        let field = |i: usize| u32_at(data, 4 + 4 * i).ok_or(BtfError::BadHeader);
        let hdr_len = field(0)? as usize;
        let (type_off, type_len) = (field(1)? as usize, field(2)? as usize);
        let (str_off, str_len) = (field(3)? as usize, field(4)? as usize);
        let types_raw = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::BadHeader)?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::BadHeader)?
            .to_vec();

        let mut types = Vec::new();
        let mut structs_by_name = HashMap::new();
        let mut pos = 0;
        while pos < types_raw.len() {
            let word = |i: usize| u32_at(types_raw, pos + 4 * i).ok_or(BtfError::BadType(0));
            let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            pos += 12;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = |j: usize| {
                            u32_at(types_raw, pos + 12 * i + 4 * j).ok_or(BtfError::BadType(kind))
                        };
                        let raw_offset = m(2)?;
                        let bitfield_size = if kind_flag { raw_offset >> 24 } else { 0 };
                        members.push(Member {
                            name_off: m(0)?,
                            type_id: m(1)?,
                            bit_offset: if kind_flag {
                                raw_offset & 0xff_ffff
                            } else {
                                raw_offset
                            },
                            bitfield: bitfield_size != 0,
                        });
                    }
                    pos += 12 * vlen;
                    if kind == KIND_STRUCT && name_off != 0 {
                        let id = types.len() as u32 + 1;
                        if let Some(name) = str_at(&strings, name_off) {
                            // Keep the first definition: duplicates are identical in vmlinux.
                            structs_by_name.entry(name.to_owned()).or_insert(id);
                        }
                    }
                    Type::Composite(members)
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    pos += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    pos += 12;
                    Type::Other
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    pos += 8 * vlen;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    pos += 12 * vlen;
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
                other => return Err(BtfError::BadType(other)),
            };
            types.push((name_off, ty));
        }
        if pos != types_raw.len() {
            return Err(BtfError::BadType(0));
        }
        Ok(Self {
            strings,
            types,
            structs_by_name,
        })
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types
            .get((id as usize).checked_sub(1)?)
            .map(|(_, t)| t)
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.ty(id)? {
                Type::Alias(next) => id = *next,
                t => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `member` in the composite `type_id`, looking through
    /// anonymous struct/union members. Returns the member's type id too.
    fn find_member(&self, type_id: u32, member: &str) -> Option<(u32, &Member)> {
        let Type::Composite(members) = self.resolve(type_id)? else {
            return None;
        };
        for m in members {
            if m.name_off == 0 {
                if let Some((bits, inner)) = self.find_member(m.type_id, member) {
                    return Some((m.bit_offset + bits, inner));
                }
            } else if str_at(&self.strings, m.name_off) == Some(member) {
                return Some((m.bit_offset, m));
            }
        }
        None
    }

    /// Byte offset of a dotted member path such as `net.ns.inum` (struct
    /// `net`, member `ns`, its member `inum`).
    pub fn offset_of(&self, path: &str) -> Result<u32, BtfError> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut type_id = *self
            .structs_by_name
            .get(root)
            .ok_or_else(|| BtfError::NoStruct(root.to_owned()))?;
        let mut bits = 0;
        for part in parts {
            let (off, member) =
                self.find_member(type_id, part)
                    .ok_or_else(|| BtfError::NoMember {
                        path: path.to_owned(),
                        member: part.to_owned(),
                    })?;
            if member.bitfield {
                return Err(BtfError::Bitfield(path.to_owned()));
            }
            bits += off;
            type_id = member.type_id;
        }
        Ok(bits / 8)
    }
}

fn str_at(strings: &[u8], off: u32) -> Option<&str> {
    let rest = strings.get(off as usize..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: `struct inner { int a; int b; }` and
    /// `struct outer { int x; union { int y; struct inner in; }; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0outer\0x\0y\0in\0".to_vec();
        let s = |name: &str| {
            let pos = strings
                .windows(name.len() + 2)
                .position(|w| {
                    w[0] == 0 && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == 0
                })
                .unwrap();
            pos as u32 + 1
        };
        let mut t: Vec<u32> = Vec::new();
        // 1: int
        t.extend([s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { a @0, b @32 }
        t.extend([s("inner"), KIND_STRUCT << 24 | 2, 8]);
        t.extend([s("a"), 1, 0, s("b"), 1, 32]);
        // 3: anonymous union { y, in }
        t.extend([0, KIND_UNION << 24 | 2, 8]);
        t.extend([s("y"), 1, 0, s("in"), 2, 0]);
        // 4: typedef inner_t -> 2 (unnamed for brevity)
        t.extend([0, KIND_TYPEDEF << 24, 2]);
        // 5: struct outer { x @0, <anon union> @64 }
        t.extend([s("outer"), KIND_STRUCT << 24 | 2, 16]);
        t.extend([s("x"), 1, 0, 0, 3, 64]);
        let types: Vec<u8> = t.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(w.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.offset_of("outer.x"), Ok(0));
        assert_eq!(btf.offset_of("outer.y"), Ok(8));
        assert_eq!(btf.offset_of("outer.in.b"), Ok(12));
        assert_eq!(btf.offset_of("inner.b"), Ok(4));
    }

    #[test]
    fn reports_what_is_missing() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(
            btf.offset_of("nope.x"),
            Err(BtfError::NoStruct("nope".into()))
        );
        assert!(matches!(
            btf.offset_of("outer.in.zz"),
            Err(BtfError::NoMember { member, .. }) if member == "zz"
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Btf::parse(b"hello world").err(), Some(BtfError::BadHeader));
        let mut truncated = sample();
        truncated.truncate(30);
        assert!(Btf::parse(&truncated).is_err());
    }

    /// The running kernel's BTF (world-readable) has the members the program
    /// needs, at offsets that are plausible for `struct sock`.
    #[test]
    fn running_kernel_has_the_members_netconn_reads() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            panic!("/sys/kernel/btf/vmlinux missing: netconn needs a kernel with BTF");
        };
        let btf = Btf::parse(&data).unwrap();
        let family = btf.offset_of("sock_common.skc_family").unwrap();
        let net = btf.offset_of("sock_common.skc_net").unwrap();
        let inum = btf.offset_of("net.ns.inum").unwrap();
        let proto = btf.offset_of("sock.sk_protocol").unwrap();
        assert_eq!(
            family, 16,
            "skc_family follows the two address words and hash"
        );
        assert!(net > family && net < 256);
        assert!(inum < 4096);
        assert!(proto > net);
    }
}
