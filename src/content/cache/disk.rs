//! A cache's optional disk tier (`disk`, `disk_size`): responses evicted from memory are
//! written to files in a directory of their own, within a byte cap, and read back (into
//! memory again) when a request misses memory but the disk has them. The files survive
//! restarts: the directory is read when the cache is made.
//!
//! No request waits for the disk to be written: evicted entries are queued to a writer
//! thread (dropped when the queue is full), which also deletes files. Reading a file back
//! runs on tokio's blocking pool. The index (what is on disk, by key hash) is in memory;
//! when the files pass the cap, the oldest written go first.
//!
//! A file holds one response: a magic line, the key, the `Vary` values, the status, the
//! headers, the timing and the body, each length-prefixed.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::directives::Directives;
use super::freshness::Timing;
use super::store::{Entry, VaryValues};

const MAGIC: &[u8; 8] = b"FULCRUM1";
/// Evicted entries waiting to be written, at most.
const QUEUE: usize = 256;

/// What the index knows of a file.
#[derive(Debug)]
struct Meta {
    id: u64,
    key: Box<[u8]>,
    vary: VaryValues,
    /// When its response arrived: an entry already on disk is not written again.
    response_time: u64,
    size: u64,
}

#[derive(Debug, Default)]
struct Index {
    map: HashMap<u64, Vec<Meta>>,
    /// Files in the order written: (hash, id).
    order: VecDeque<(u64, u64)>,
    bytes: u64,
    next_id: u64,
}

enum Job {
    Write(u64, Arc<Entry>),
    Remove(Vec<u64>),
}

/// The disk tier of one cache.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    cap: u64,
    index: Arc<Mutex<Index>>,
    queue: SyncSender<Job>,
    /// Entries read back from disk.
    pub hits: AtomicU64,
}

impl Disk {
    /// The tier in `dir` (made if missing), at most `cap` bytes, with what earlier runs
    /// left there; `hash` hashes keys as the cache does.
    pub fn open(dir: &Path, cap: u64, hash: impl Fn(&[u8]) -> u64) -> io::Result<Disk> {
        std::fs::create_dir_all(dir)?;
        let mut index = Index::default();
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let id = name
                .strip_suffix(".entry")
                .and_then(|h| u64::from_str_radix(h, 16).ok());
            match id {
                Some(id) => match read_meta(&path, id) {
                    Ok(meta) => found.push(meta),
                    Err(_) => drop(std::fs::remove_file(&path)),
                },
                // A file being written when the process stopped.
                None if name.ends_with(".tmp") => drop(std::fs::remove_file(&path)),
                None => {}
            }
        }
        found.sort_by_key(|m| m.id);
        for meta in found {
            index.next_id = index.next_id.max(meta.id + 1);
            index.bytes += meta.size;
            let h = hash(&meta.key);
            index.order.push_back((h, meta.id));
            index.map.entry(h).or_default().push(meta);
        }
        let index = Arc::new(Mutex::new(index));
        let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            dir: dir.to_owned(),
            cap,
            index: Arc::clone(&index),
        };
        std::thread::Builder::new()
            .name("fulcrum-cache-disk".into())
            .spawn(move || writer.run(jobs))?;
        let disk = Disk {
            dir: dir.to_owned(),
            cap,
            index,
            queue,
            hits: AtomicU64::new(0),
        };
        Ok(disk)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, job: Job) {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(job) {
            tracing::debug!(dir = %self.dir.display(), "cache disk queue full: an entry is not written");
        }
    }

    /// Queues `entry` (evicted from memory) to be written.
    pub fn spill(&self, hash: u64, entry: Arc<Entry>) {
        if entry.size() as u64 <= self.cap {
            self.queue(Job::Write(hash, entry));
        }
    }

    /// The file (its id) of the variant of `key` a request gets (`same` as in the
    /// store's get).
    pub fn find(
        &self,
        hash: u64,
        key: &[u8],
        same: impl Fn(&str, Option<&[u8]>) -> bool,
    ) -> Option<u64> {
        let index = self.index();
        let meta = index
            .map
            .get(&hash)?
            .iter()
            .find(|m| &*m.key == key && m.vary.iter().all(|(n, v)| same(n, v.as_deref())))?;
        Some(meta.id)
    }

    /// Reads the entry in file `id` (on tokio's blocking pool); a file that cannot be
    /// read is dropped from the index.
    pub async fn read(&self, hash: u64, id: u64) -> Option<Entry> {
        let path = file(&self.dir, id);
        let read = tokio::task::spawn_blocking(move || read_entry(&path)).await;
        match read {
            Ok(Ok(entry)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry)
            }
            _ => {
                let mut index = self.index();
                forget(&mut index, hash, id);
                drop(index);
                self.queue(Job::Remove(vec![id]));
                None
            }
        }
    }

    /// Drops the files of entries whose key `matches`; how many.
    pub fn remove(&self, matches: impl Fn(&[u8]) -> bool) -> usize {
        let mut index = self.index();
        let mut gone = Vec::new();
        for (hash, metas) in index.map.iter() {
            gone.extend(
                metas
                    .iter()
                    .filter(|m| matches(&m.key))
                    .map(|m| (*hash, m.id)),
            );
        }
        for (hash, id) in &gone {
            forget(&mut index, *hash, *id);
        }
        drop(index);
        let count = gone.len();
        if count > 0 {
            self.queue(Job::Remove(gone.into_iter().map(|(_, id)| id).collect()));
        }
        count
    }

    /// Bytes of files held.
    pub fn bytes(&self) -> u64 {
        self.index().bytes
    }

    /// Entries held.
    pub fn entries(&self) -> usize {
        self.index().order.len()
    }
}

/// Takes `id` out of the index (its file is the writer's to delete).
fn forget(index: &mut Index, hash: u64, id: u64) {
    if let Some(metas) = index.map.get_mut(&hash) {
        if let Some(at) = metas.iter().position(|m| m.id == id) {
            let meta = metas.remove(at);
            index.bytes -= meta.size;
        }
        if metas.is_empty() {
            index.map.remove(&hash);
        }
    }
    index.order.retain(|&(_, i)| i != id);
}

fn file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.entry"))
}

/// The writer thread: writes, and deletes, files.
struct Writer {
    dir: PathBuf,
    cap: u64,
    index: Arc<Mutex<Index>>,
}

impl Writer {
    fn run(self, jobs: Receiver<Job>) {
        // Past the cap from an earlier run with a larger one.
        self.trim();
        for job in jobs {
            match job {
                Job::Write(hash, entry) => self.write(hash, &entry),
                Job::Remove(ids) => {
                    for id in ids {
                        let _ = std::fs::remove_file(file(&self.dir, id));
                    }
                }
            }
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, hash: u64, entry: &Entry) {
        let (id, old) = {
            let mut index = self.index();
            let same = |m: &Meta| *m.key == *entry.key && m.vary == entry.vary;
            let old = index
                .map
                .get(&hash)
                .and_then(|v| v.iter().find(|m| same(m)))
                .map(|m| (m.id, m.response_time));
            if let Some((_, time)) = old
                && time == entry.timing.response_time
            {
                // Read back from disk earlier: the file is the same.
                return;
            }
            index.next_id += 1;
            (index.next_id - 1, old.map(|(id, _)| id))
        };
        let path = file(&self.dir, id);
        let tmp = path.with_extension("tmp");
        let written = write_entry(&tmp, entry).and_then(|size| {
            std::fs::rename(&tmp, &path)?;
            Ok(size)
        });
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cache disk: an entry could not be written");
                let _ = std::fs::remove_file(&tmp);
                return;
            }
        };
        {
            let mut index = self.index();
            if let Some(old) = old {
                forget(&mut index, hash, old);
            }
            index.bytes += size;
            index.order.push_back((hash, id));
            index.map.entry(hash).or_default().push(Meta {
                id,
                key: entry.key.clone(),
                vary: entry.vary.clone(),
                response_time: entry.timing.response_time,
                size,
            });
        }
        if let Some(old) = old {
            let _ = std::fs::remove_file(file(&self.dir, old));
        }
        self.trim();
    }

    /// Deletes the oldest files until the tier is within its cap.
    fn trim(&self) {
        loop {
            let id = {
                let mut index = self.index();
                if index.bytes <= self.cap {
                    return;
                }
                let Some((hash, id)) = index.order.front().copied() else {
                    return;
                };
                forget(&mut index, hash, id);
                id
            };
            let _ = std::fs::remove_file(file(&self.dir, id));
        }
    }
}

fn put(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(bytes)
}

fn take(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 << 20 {
        return Err(io::Error::other("a field is too long"));
    }
    let mut v = vec![0; len];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn number(r: &mut impl Read) -> io::Result<u64> {
    let mut n = [0; 8];
    r.read_exact(&mut n)?;
    Ok(u64::from_le_bytes(n))
}

/// Writes `entry` to `path`; the file's size.
fn write_entry(path: &Path, entry: &Entry) -> io::Result<u64> {
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(MAGIC)?;
    put(&mut w, &entry.key)?;
    w.write_all(&(entry.vary.len() as u64).to_le_bytes())?;
    for (name, value) in entry.vary.iter() {
        put(&mut w, name.as_bytes())?;
        w.write_all(&[u8::from(value.is_some())])?;
        put(&mut w, value.as_deref().unwrap_or(b""))?;
    }
    w.write_all(&entry.timing.response_time.to_le_bytes())?;
    w.write_all(&entry.timing.request_time.to_le_bytes())?;
    w.write_all(&entry.timing.initial_age.to_le_bytes())?;
    w.write_all(&entry.timing.lifetime.to_le_bytes())?;
    w.write_all(&u64::from(entry.status).to_le_bytes())?;
    w.write_all(&(entry.headers.len() as u64).to_le_bytes())?;
    for (name, value) in entry.headers.iter() {
        put(&mut w, name.as_str().as_bytes())?;
        put(&mut w, value.as_bytes())?;
    }
    w.write_all(&(entry.body.len() as u64).to_le_bytes())?;
    w.write_all(&entry.body)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    Ok(file.metadata()?.len())
}

/// The key, `Vary` values and response time at the head of a file.
fn read_head(r: &mut impl Read) -> io::Result<(Box<[u8]>, VaryValues, u64)> {
    let mut magic = [0; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::other("not a cache file"));
    }
    let key = take(r)?.into_boxed_slice();
    let count = number(r)?.min(64);
    let mut vary = Vec::new();
    for _ in 0..count {
        let name = String::from_utf8(take(r)?).map_err(io::Error::other)?;
        let mut present = [0];
        r.read_exact(&mut present)?;
        let value = take(r)?;
        vary.push((name.into(), (present[0] == 1).then(|| value.into())));
    }
    Ok((key, vary.into(), number(r)?))
}

fn read_meta(path: &Path, id: u64) -> io::Result<Meta> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    let (key, vary, response_time) = read_head(&mut BufReader::new(f))?;
    Ok(Meta {
        id,
        key,
        vary,
        response_time,
        size,
    })
}

fn read_entry(path: &Path) -> io::Result<Entry> {
    let mut r = BufReader::new(File::open(path)?);
    let (key, vary, response_time) = read_head(&mut r)?;
    let timing = Timing {
        response_time,
        request_time: number(&mut r)?,
        initial_age: number(&mut r)?,
        lifetime: number(&mut r)?,
    };
    let status = number(&mut r)? as u16;
    let count = number(&mut r)?.min(1024);
    let mut headers = Vec::new();
    let mut cache_control = Vec::new();
    for _ in 0..count {
        let (name, value) = (take(&mut r)?, take(&mut r)?);
        if name == b"cache-control" {
            cache_control.push(value.clone());
        }
        headers.push((
            http::HeaderName::from_bytes(&name).map_err(io::Error::other)?,
            http::HeaderValue::from_bytes(&value).map_err(io::Error::other)?,
        ));
    }
    let len = number(&mut r)? as usize;
    let mut body = vec![0; len.min(1 << 30)];
    r.read_exact(&mut body)?;
    Ok(Entry::new(
        key,
        vary,
        status,
        headers.into(),
        Bytes::from(body),
        Directives::parse(cache_control.iter().map(Vec::as_slice)),
        timing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry::new(
            b"example.com/a?b".to_vec().into(),
            vec![("accept-encoding".into(), Some(b"gzip".to_vec().into()))].into(),
            200,
            vec![(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("max-age=60"),
            )]
            .into(),
            Bytes::from_static(b"hello"),
            Directives::parse(std::iter::once(&b"max-age=60"[..])),
            Timing {
                request_time: 1,
                response_time: 2,
                initial_age: 3,
                lifetime: 60,
            },
        );
        let path = dir.path().join("0.entry");
        let size = write_entry(&path, &entry).unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let back = read_entry(&path).unwrap();
        assert_eq!(
            (back.key.clone(), back.vary.clone()),
            (entry.key.clone(), entry.vary.clone())
        );
        assert_eq!(back.status, 200);
        assert_eq!(back.body, entry.body);
        assert_eq!(back.timing, entry.timing);
        assert_eq!(back.directives, entry.directives);
        assert_eq!(back.headers, entry.headers);
        std::fs::write(&path, b"FULCRUM1\xff\xff\xff\xff").unwrap();
        assert!(read_entry(&path).is_err());
    }
}
