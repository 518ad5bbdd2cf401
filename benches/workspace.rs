//! Workspace benchmarks, run by `make bench` beside benches/vm.rs (inside
//! the test host on this kind of machine). Everything goes through one
//! warm `pyro mcp serve`, the way a chat host drives workspaces, and each
//! figure is set against a floor measured in the same run:
//!   - `workspace_create` seeded with a 5,000-file, 50 MB tree, time to
//!     ready, against creating one from an empty directory;
//!   - disk bytes a new workspace takes on the host;
//!   - `workspace_exec` of `true`, median and p99, against the floor: one
//!     bare agent request over vsock that fork/exec/waits `true` in the guest
//!     (1000 calls by default: the nearest-rank p99 of n calls is the
//!     (n/100 + 1)-th slowest, so with 200 it rested on two or three calls,
//!     and in the test host a stall of the guest's 1 vCPU now and then
//!     decided it: two runs of 200 gave 1.14x and 1.75x);
//!   - `workspace_sync_push` throughput against streaming the same number
//!     of bytes to the agent's `discard` request (raw vsock): for bulk data
//!     (five 10 MB files), and for the 5,000-file tree, which is also set
//!     against the guest's own `tar -x` + syncfs of it from a local file.
//!
//! Prints one JSON object; tests/bench/run turns it into docs/benchmarks.md.

#[path = "../tests/support/mod.rs"]
mod support;

use pyro_proto::{client, ChunkWriter, ExecRequest, Request, Response};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::mcp::Mcp;
use support::vm::VmGuard;
use support::workspace_id;

const SEED_FILES: usize = 5_000;
const SEED_BYTES: usize = 50 * 1000 * 1000;
const BULK_FILES: usize = 5;

struct Args {
    pyro: PathBuf,
    environment: String,
    work: PathBuf,
    creates: usize,
    execs: usize,
    pushes: usize,
}

fn args() -> Args {
    let mut a = Args {
        pyro: PathBuf::from("pyro"),
        environment: "debian:12".into(),
        work: std::env::temp_dir().join("pyro-bench-workspace"),
        creates: 3,
        execs: 1000,
        pushes: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--pyro" => a.pyro = v().into(),
            "--environment" => a.environment = v(),
            "--work" => a.work = v().into(),
            "--creates" => a.creates = v().parse().expect("--creates N"),
            "--execs" => a.execs = v().parse().expect("--execs N"),
            "--pushes" => a.pushes = v().parse().expect("--pushes N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Median and p99 (nearest rank) of samples, in milliseconds.
fn stats_ms(v: &mut [f64]) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    json!({"samples": v.len(), "median_ms": rank(0.5) * 1e3, "p99_ms": rank(0.99) * 1e3})
}

/// `files` files in up to 50 directories totalling `SEED_BYTES`, filled
/// with xorshift noise so nothing along the way can compress them.
fn make_tree(dir: &Path, files: usize) -> u64 {
    let per_file = SEED_BYTES / files;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; per_file];
    for i in 0..files {
        let sub = dir.join(format!("pkg{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(sub.join(format!("file{i:04}.dat")), &buf).unwrap();
    }
    (per_file * files) as u64
}

/// Bytes allocated on disk under `p` (sparse files count what they use).
fn allocated_bytes(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut total = md.blocks() * 512;
    if md.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            total += allocated_bytes(&e.path());
        }
    }
    total
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let v = f();
    (start.elapsed().as_secs_f64(), v)
}

/// The floor for one exec: a bare agent request that runs `true`.
fn raw_exec(vsock: &Path) {
    let req = Request::Exec(ExecRequest {
        argv: vec!["true".into()],
        cwd: Some("/workspace".into()),
        max_output_bytes: 4096,
        ..Default::default()
    });
    match client::call(vsock, &req, Duration::from_secs(60)) {
        Ok(Response::Exec(r)) if r.exit_code == Some(0) => {}
        other => panic!("raw exec failed: {other:?}"),
    }
}

/// Streams `bytes` to the agent, which reads and drops them.
fn raw_stream(vsock: &Path, bytes: u64) {
    let mut s = client::connect(vsock, Duration::from_secs(300)).expect("connect");
    pyro_proto::write_frame(&mut s, &Request::Discard).unwrap();
    let block = vec![0x5au8; pyro_proto::CHUNK_BYTES];
    let mut w = ChunkWriter::new(&mut s);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    w.finish().unwrap();
    match pyro_proto::read_frame(&mut s) {
        Ok(Some(Response::Discarded { bytes: got })) if got == bytes => {}
        other => panic!("discard failed: {other:?}"),
    }
}

fn main() {
    let a = args();
    let home = PathBuf::from(std::env::var_os("PYRO_HOME").expect("PYRO_HOME must be set"));
    let _ = std::fs::remove_dir_all(&a.work);
    let (tree, bulk, empty) = (
        a.work.join("tree"),
        a.work.join("bulk"),
        a.work.join("empty"),
    );
    std::fs::create_dir_all(&empty).unwrap();
    let seed_bytes = make_tree(&tree, SEED_FILES);
    let bulk_bytes = make_tree(&bulk, BULK_FILES);
    let _vm = VmGuard::with_binary(&a.pyro);
    // Host paths over MCP are confined: the operator allows the work area
    // (--allow-path takes an absolute path; --work may be relative).
    let work = std::fs::canonicalize(&a.work).unwrap();
    let mut m = Mcp::start(&a.pyro, &a.work, &["--allow-path", work.to_str().unwrap()]);
    let env = a.environment.as_str();

    // Create: seeded and empty, interleaved; keep the last empty one.
    let (mut seeded, mut bare, mut disk, mut disk_reported) = (vec![], vec![], vec![], vec![]);
    let mut ws = String::new();
    for i in 0..a.creates {
        let (t, r) = timed(|| {
            m.call(
                "workspace_create",
                json!({"environment": env, "seed_path": tree}),
            )
        });
        seeded.push(t);
        m.call(
            "workspace_delete",
            json!({"workspace_id": workspace_id(&r)}),
        );
        let (t, r) = timed(|| {
            m.call(
                "workspace_create",
                json!({"environment": env, "seed_path": empty}),
            )
        });
        bare.push(t);
        let id = workspace_id(&r);
        disk.push(allocated_bytes(&home.join("workspaces").join(&id)) as f64);
        disk_reported.push(
            r["disk"]["allocated_bytes_at_create"]
                .as_f64()
                .unwrap_or(0.0),
        );
        if i + 1 < a.creates {
            m.call("workspace_delete", json!({"workspace_id": id}));
        } else {
            ws = id;
        }
        eprintln!("bench: workspace create round {}/{} done", i + 1, a.creates);
    }

    // Exec against its floor, interleaved so host drift hits both alike.
    let vsock = home.join("workspaces").join(&ws).join("vm/vsock.sock");
    let exec_args = json!({"workspace_id": ws, "command": "true"});
    for _ in 0..3 {
        m.call("workspace_exec", exec_args.clone());
        raw_exec(&vsock);
    }
    let (mut exec, mut floor, mut ping) = (vec![], vec![], vec![]);
    let mut in_guest = vec![];
    for _ in 0..a.execs {
        let (t, r) = timed(|| m.call("workspace_exec", exec_args.clone()));
        assert_eq!(r["exit_code"], 0, "{r}");
        exec.push(t);
        in_guest.push((t, r["duration_ms"].as_f64().unwrap_or(0.0)));
        floor.push(timed(|| raw_exec(&vsock)).0);
        let (t, r) = timed(|| client::call(&vsock, &Request::Ping, Duration::from_secs(30)));
        assert!(matches!(r, Ok(Response::Pong { .. })), "{r:?}");
        ping.push(t);
    }
    eprintln!("bench: {} workspace execs done", a.execs);
    // Where the slowest calls spent their time: the guest's own duration
    // covers fork/exec/wait of the command, the rest is host, vsock, syncfs.
    in_guest.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap());
    for (t, g) in in_guest.iter().take(3) {
        eprintln!(
            "bench: slow exec {:.0} ms, {g:.0} ms of it in the guest command",
            t * 1e3
        );
    }

    // Sync pushes (bulk, then the tree) against the raw stream of as many
    // bytes, interleaved.
    let (mut push, mut push_bulk, mut raw) = (vec![], vec![], vec![]);
    let mb_s = |bytes: u64, t: f64| bytes as f64 / t / 1e6;
    let sync_push = |m: &mut Mcp, src: &Path, dest: String| {
        timed(|| {
            m.call(
                "workspace_sync_push",
                json!({"workspace_id": ws, "source_path": src, "dest": dest}),
            )
        })
        .0
    };
    for i in 0..a.pushes {
        push_bulk.push(mb_s(
            bulk_bytes,
            sync_push(&mut m, &bulk, format!("bulk{i}")),
        ));
        raw.push(mb_s(bulk_bytes, timed(|| raw_stream(&vsock, bulk_bytes)).0));
        push.push(mb_s(
            seed_bytes,
            sync_push(&mut m, &tree, format!("push{i}")),
        ));
        eprintln!("bench: sync push round {}/{} done", i + 1, a.pushes);
    }
    // The guest's own floor for the same work: GNU tar extracting the tree
    // from a file already in the guest, then syncfs like the agent does.
    let mut local = vec![];
    for i in 0..a.pushes {
        let cmd = format!(
            "set -e; [ -f /tmp/seed.tar ] || tar -cf /tmp/seed.tar -C /workspace/push0 .; \
             mkdir local{i}; s=$(date +%s%N); tar -xf /tmp/seed.tar -C local{i}; sync -f .; \
             e=$(date +%s%N); echo $((e - s))"
        );
        let r = m.call(
            "workspace_exec",
            json!({"workspace_id": ws, "command": cmd, "timeout_seconds": 600}),
        );
        assert_eq!(r["exit_code"], 0, "{r}");
        let ns: f64 = r["stdout"].as_str().unwrap().trim().parse().unwrap();
        local.push(seed_bytes as f64 / (ns / 1e9) / 1e6);
    }
    m.call("workspace_delete", json!({"workspace_id": ws}));
    m.close();
    let _ = std::fs::remove_dir_all(&a.work);

    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let out = json!({
        "environment": a.environment,
        "seed": {"files": SEED_FILES, "bytes": seed_bytes},
        "create_seeded_s": med(&mut seeded),
        "create_empty_s": med(&mut bare),
        "creates": a.creates,
        "disk_bytes_per_workspace": med(&mut disk),
        "disk_bytes_reported": med(&mut disk_reported),
        "exec": stats_ms(&mut exec),
        "exec_floor": stats_ms(&mut floor),
        "ping": stats_ms(&mut ping),
        "sync_push_mb_s": med(&mut push),
        "sync_push_bulk_mb_s": med(&mut push_bulk),
        "bulk": {"files": BULK_FILES, "bytes": bulk_bytes},
        "raw_vsock_mb_s": med(&mut raw),
        "guest_local_untar_mb_s": med(&mut local),
        "pushes": a.pushes,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
