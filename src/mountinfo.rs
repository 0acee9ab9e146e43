//! The fields of a `/proc/self/mountinfo` line (proc(5)) that the daemon
//! reads: the mount adapter finds its own mount, the memory guard finds the
//! cgroup hierarchies.

/// One line of `/proc/self/mountinfo`, escapes undone where it matters.
pub(crate) struct MountLine<'a> {
    /// The device, `major:minor`.
    pub device: &'a [u8],
    /// The directory of the filesystem that is mounted (`/` for a whole one).
    pub root: Vec<u8>,
    /// Where it is mounted.
    pub mount_point: Vec<u8>,
    /// The filesystem type (`fuse.scratchfs`, `cgroup2`, ...).
    pub fstype: &'a [u8],
    /// The filesystem's own options (`rw,memory` for a cgroup-v1 hierarchy).
    pub super_options: &'a [u8],
}

/// Parses one line; `None` if it is malformed.
pub(crate) fn parse(line: &[u8]) -> Option<MountLine<'_>> {
    let mut fields = line.split(|&b| b == b' ');
    let device = fields.nth(2)?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    // Optional fields end at a lone "-"; type, source and options follow.
    let mut rest = fields.skip_while(|&f| f != b"-").skip(1);
    let fstype = rest.next()?;
    let super_options = rest.nth(1).unwrap_or(b"");
    Some(MountLine { device, root, mount_point, fstype, super_options })
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
pub(crate) fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let digits = &field[i + 1..i + 4];
            if let Some(v) = std::str::from_utf8(digits).ok().and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_undone() {
        assert_eq!(unescape(br"/mnt/a\040b\134c"), b"/mnt/a b\\c");
        assert_eq!(unescape(br"/trailing\04"), br"/trailing\04");
        assert_eq!(unescape(br"/x\\y"), br"/x\\y");
    }

    #[test]
    fn fields_are_found_after_optional_ones() {
        let l = parse(b"36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:14 master:2 - cgroup cgroup rw,memory")
            .unwrap();
        assert_eq!(l.device, b"0:31");
        assert_eq!(l.root, b"/");
        assert_eq!(l.mount_point, b"/sys/fs/cgroup/memory");
        assert_eq!(l.fstype, b"cgroup");
        assert_eq!(l.super_options, b"rw,memory");
        let l = parse(br"50 1 0:52 /sub /mnt/x\040y rw - fuse.scratchfs scratchfs rw,user_id=0").unwrap();
        assert_eq!((l.root.as_slice(), l.mount_point.as_slice()), (&b"/sub"[..], &b"/mnt/x y"[..]));
        assert_eq!(l.fstype, b"fuse.scratchfs");
        assert!(parse(b"36 25 0:31").is_none());
    }
}
