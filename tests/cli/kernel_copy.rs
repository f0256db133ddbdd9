//! Large files copied inside the kernel, with the real binary on real filesystems made for the
//! test: `copy_file_range` on ext4, a reflink (`FICLONE`) on XFS whose extents are really shared,
//! a full disk in the middle of a copy, and stdin streamed as before — each path named by the
//! `-vv` log.

use promote_tests::data;

use crate::support::*;

/// The `-vv` lines that name the path a put took.
fn path_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.contains("kernel copy")).collect()
}

#[test]
fn put_on_ext4_copies_with_copy_file_range_and_says_so() {
    let s = Scratch::new();
    let ext4 = Mounted::image(&s, "ext4", 128 << 20);
    let bytes = data::bytes(1, (20 << 20) + 12_345);
    let src = ext4.0.join("big.bin");
    std::fs::write(&src, &bytes).expect("write source");
    let root = ext4.0.join("store");
    let (src, root) = (src.to_str().expect("path"), root.to_str().expect("path"));
    let out = s.run(&["-vv", "--root", root, "put", src, "big.bin", "--sha256", &sha(&bytes)]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert_eq!(path_lines(&err).len(), 1, "{err}");
    assert!(path_lines(&err)[0].contains("kernel copy: copy_file_range"), "{err}");
    assert!(std::fs::read(ext4.0.join("store/big.bin")).expect("read back") == bytes, "content differs");
    assert_code(&s.run(&["--root", root, "verify", "big.bin", "--sha256", &sha(&bytes)]), 0);
    // A wrong --sha256 aborts: nothing published, nothing staged.
    let out = s.run(&["-vv", "--root", root, "put", src, "wrong.bin", "--sha256", &sha(b"other")]);
    assert_code(&out, 4);
    assert!(path_lines(&stderr(&out))[0].contains("kernel copy: copy_file_range"), "{}", stderr(&out));
    assert!(!ext4.0.join("store/wrong.bin").exists(), "published despite a wrong --sha256");
    // A small file keeps the streaming path.
    std::fs::write(ext4.0.join("small.bin"), b"small").expect("write");
    let small = ext4.0.join("small.bin");
    let out = s.run(&["-vv", "--root", root, "put", small.to_str().expect("path"), "small.bin"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(path_lines(&err)[0].contains("kernel copy not used: the source (5 B) is smaller than"), "{err}");
    let staging: Vec<_> = std::fs::read_dir(ext4.0.join("store/.promote/staging")).expect("staging").collect();
    assert!(staging.is_empty(), "staging left: {staging:?}");
    drop(ext4);
}

#[test]
fn put_from_stdin_streams_and_says_so() {
    let s = Scratch::new();
    let bytes = data::bytes(2, 3 << 20);
    let src = s.file("big.bin", &bytes);
    let out = s
        .cmd(&["-vv", "put", "-", "from-stdin.bin", "--sha256", &sha(&bytes)])
        .stdin(std::fs::File::open(&src).expect("open"))
        .output()
        .expect("run promote");
    assert_code(&out, 0);
    let err = stderr(&out);
    assert_eq!(path_lines(&err).len(), 1, "{err}");
    assert!(path_lines(&err)[0].contains("kernel copy not used: the source is read as a stream"), "{err}");
    assert!(std::fs::read(s.root().join("from-stdin.bin")).expect("read back") == bytes, "content differs");
    assert!(s.staging_files().is_empty());
}

#[test]
fn put_on_xfs_reflinks_and_shares_the_extents() {
    let s = Scratch::new();
    // mkfs.xfs wants at least 300 MB; the image is sparse, so it costs what is written.
    let xfs = Mounted::image(&s, "xfs", 512 << 20);
    let bytes = data::bytes(3, 64 << 20);
    let src = xfs.0.join("big.bin");
    std::fs::write(&src, &bytes).expect("write source");
    let root = xfs.0.join("store");
    let (src, root) = (src.to_str().expect("path"), root.to_str().expect("path"));
    // The store exists before the space is measured.
    assert_code(&s.run(&["--root", root, "put", "-", "empty"]), 0);
    let before = xfs.used();
    let out = s.run(&["-vv", "--root", root, "put", src, "big.bin", "--sha256", &sha(&bytes)]);
    assert_code(&out, 0);
    let after = xfs.used();
    let err = stderr(&out);
    assert!(path_lines(&err).first().is_some_and(|l| l.contains("kernel copy: reflink (FICLONE)")), "{err}");
    assert_code(&s.run(&["--root", root, "verify", "big.bin", "--sha256", &sha(&bytes)]), 0);
    assert!(std::fs::read(xfs.0.join("store/big.bin")).expect("read back") == bytes, "content differs");
    // A copy would have taken 64 MiB more; shared extents take next to nothing.
    let grew = after.saturating_sub(before);
    assert!(grew < 4 << 20, "the filesystem's used space grew by {grew} bytes for a 64 MiB reflink");
    drop(xfs);
}

#[test]
fn a_full_disk_in_the_middle_of_a_kernel_copy_is_one_clear_error_and_leaves_nothing() {
    let s = Scratch::new();
    // The source and the root on one 12 MiB tmpfs: copying 7 MiB there runs out of space.
    let small = Mounted::tmpfs(&s.path().join("small"), "12m");
    let src = small.0.join("big.bin");
    std::fs::write(&src, data::bytes(4, 7 << 20)).expect("write source");
    let root = small.0.join("root");
    // An existing store, so the put's only line is its error (no "created a new store").
    std::fs::create_dir(&root).expect("mkdir root");
    let out = s.run(&["--root", root.to_str().expect("path"), "put", src.to_str().expect("path"), "full"]);
    assert_code(&out, 6);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("\"full\"") && err.contains("copy_file_range") && err.contains("is full"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!root.join("full").exists(), "published on a full disk");
    let staging: Vec<_> = std::fs::read_dir(root.join(".promote/staging")).expect("staging").collect();
    assert!(staging.is_empty(), "staging left after a full disk: {staging:?}");
    drop(small);
}
