//! The Lua scripts the shared store runs (each an atomic compare-and-… over every key of one
//! call), and how a call of one is written: by SHA1 (`EVALSHA`), or whole (`EVAL`) where the
//! server refuses that.
//!
//! A server that does not know a script yet (started since, or failed over to a replica without
//! its script cache) answers `NOSCRIPT`; the client then loads it (`SCRIPT LOAD`) and calls again
//! ([`super::redis`], with redis-rs [`Script`]).

use std::sync::LazyLock;

use redis::{Cmd, Script};

/// A script: its text, and its SHA1 (computed once).
pub struct Lua {
    pub script: Script,
    /// The text, for `EVAL` where the server refuses `EVALSHA`.
    pub source: &'static str,
}

impl Lua {
    fn new(source: &'static str) -> Lua {
        Lua { script: Script::new(source), source }
    }
}

/// Compare-and-set of every key of a batch in one call: `KEYS[i]` is set to `ARGV[2i]` (TTL the
/// last argument) only while it still holds `ARGV[2i-1]`, or already the new value (so that a call
/// sent again after a lost answer changes nothing twice). Returns 1 (written) or 0 per key.
pub static COMPARE_AND_SET: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "local ttl=ARGV[#ARGV] local out={} \
         for i,k in ipairs(KEYS) do local old,new=ARGV[2*i-1],ARGV[2*i] local v=redis.call('get',k) \
         if v==old or v==new then redis.call('set',k,new,'PX',ttl) out[i]=1 else out[i]=0 end end \
         return out",
    )
});

/// [`COMPARE_AND_SET`] keeping each key's TTL, for the offsets written into a batch's claims
/// before its commit: one command per key where the compare holds (the common case), `SET
/// KEYS[i] ARGV[2i] XX KEEPTTL GET`; should the key have held neither `ARGV[2i-1]` nor the new
/// value, what it held is put back at once (inside the script: no other client sees the new
/// value, and the key keeps its TTL). 1 (written) or 0 per key.
pub static COMPARE_AND_SET_KEEPING_TTL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "local out={} for i,k in ipairs(KEYS) do \
         local old,new=ARGV[2*i-1],ARGV[2*i] local v=redis.call('set',k,new,'XX','KEEPTTL','GET') \
         if v==old or v==new then out[i]=1 else out[i]=0 if v then redis.call('set',k,v,'KEEPTTL') end end \
         end return out",
    )
});

/// `DEL KEYS[i]` only while it still holds `ARGV[i]` (releasing only one's own claims or lock);
/// 1 or 0 per key.
pub static COMPARE_AND_DELETE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "local out={} for i,k in ipairs(KEYS) do \
         if redis.call('get',k)==ARGV[i] then out[i]=redis.call('del',k) else out[i]=0 end end return out",
    )
});

/// `PEXPIRE key ttl` only while it still holds `value` (renewing only one's own lock).
pub static COMPARE_AND_EXPIRE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "if redis.call('get',KEYS[1])==ARGV[1] then \
         return redis.call('pexpire',KEYS[1],ARGV[2]) else return 0 end",
    )
});

/// A script with its keys and arguments.
pub struct ScriptCall<'a> {
    pub lua: &'static Lua,
    pub keys: Vec<&'a str>,
    pub args: Vec<&'a str>,
}

impl ScriptCall<'_> {
    /// `EVALSHA sha1 …`, or `EVAL text …` when `whole`.
    pub fn cmd(&self, whole: bool) -> Cmd {
        let mut cmd = redis::cmd(if whole { "EVAL" } else { "EVALSHA" });
        cmd.arg(if whole { self.lua.source } else { self.lua.script.get_hash() })
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}
