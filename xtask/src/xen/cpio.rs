//! A writer of the `newc` cpio format (the "new ASCII" format, magic `070701`), the format the
//! Linux kernel unpacks an initramfs from: a 110-byte header of 13 eight-digit hex fields, the
//! NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; closed by an entry
//! named `TRAILER!!!`. Enough for directories and regular files (busybox makes its own links at boot).

/// One entry of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory, mode 0755.
    Dir(String),
    /// A regular file with its permission bits (e.g. 0o755) and contents.
    File {
        /// Path inside the archive, without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Contents.
        data: Vec<u8>,
    },
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
/// Regular file.
const S_IFREG: u32 = 0o100_000;

/// Builds a newc archive of `entries`, in order (parents before children is the caller's
/// business: the kernel creates entries in archive order).
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let ino = index as u32 + 1;
        match entry {
            Entry::Dir(path) => push(&mut out, ino, S_IFDIR | 0o755, 2, path, &[]),
            Entry::File { path, mode, data } => {
                push(&mut out, ino, S_IFREG | (mode & 0o7777), 1, path, data)
            }
        }
    }
    push(&mut out, 0, 0, 1, "TRAILER!!!", &[]);
    out
}

/// Appends one header, name and data, each padded to 4 bytes.
fn push(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, name: &str, data: &[u8]) {
    let name = name.trim_start_matches('/');
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

/// Pads `out` with NULs to a multiple of 4 bytes.
fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::{Entry, archive};

    /// Reads the archive back: (name, mode, data) per entry, checking magic and padding.
    fn read(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let total = bytes.len();
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(text, 16).unwrap() as usize
            };
            let (mode, size, namesize) = (field(1), field(6), field(11));
            let name = std::str::from_utf8(&bytes[110..110 + namesize - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = bytes[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            assert_eq!((total - bytes.len() + next) % 4, 0);
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty());
                return entries;
            }
            entries.push((name, mode as u32, data));
        }
    }

    #[test]
    fn entries_round_trip_with_types_modes_and_padding() {
        let bytes = archive(&[
            Entry::Dir("bin".into()),
            Entry::File {
                path: "/bin/busybox".into(),
                mode: 0o755,
                data: b"12345".to_vec(),
            },
            Entry::File {
                path: "init".into(),
                mode: 0o700,
                data: Vec::new(),
            },
        ]);
        assert_eq!(bytes.len() % 4, 0);
        let entries = read(&bytes);
        assert_eq!(
            entries,
            vec![
                ("bin".into(), 0o040_755, vec![]),
                ("bin/busybox".into(), 0o100_755, b"12345".to_vec()),
                ("init".into(), 0o100_700, vec![]),
            ]
        );
    }

    #[test]
    fn the_header_is_110_bytes_of_hex_fields() {
        let bytes = archive(&[]);
        // Only the trailer: header, "TRAILER!!!\0" (11 bytes), padded from 121 to 124.
        assert_eq!(bytes.len(), 124);
        assert!(bytes[6..110].iter().all(u8::is_ascii_hexdigit));
        assert_eq!(&bytes[110..120], b"TRAILER!!!");
    }
}
