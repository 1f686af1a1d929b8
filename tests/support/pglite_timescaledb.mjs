// In-memory PostgreSQL 17 + TimescaleDB (PGlite compiled to WASM) served over the PostgreSQL
// wire protocol on 127.0.0.1, for the test suite (see tests/support/timescaledb.py).
//
// Usage: node tests/support/pglite_timescaledb.mjs <port>     (port 0 = pick a free one)
//
// - Prints exactly one line, `ready <port>`, to stdout once it accepts connections; anything
//   else goes to stderr.
// - Exits on SIGTERM/SIGINT, and also when its stdin reaches EOF, so a test run that dies
//   cannot leave it behind (the parent holds the write end of a pipe). Started with stdin
//   at /dev/null, it therefore exits at once: keep stdin open (e.g. `cat | node ...`).
// - Requires `npm install` in the repository root (package.json pins the packages).
//
// Limits: a single backend, so one client at a time (others queue until it disconnects);
// any user/password is accepted; current_database() is always template1; clients must use
// sslmode=disable; COPY ... FROM STDIN crashes the WASM backend, do not use it.
import { PGlite } from '@electric-sql/pglite'
import { timescaledb } from '@electric-sql/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const requested = Number.parseInt(process.argv[2] ?? '', 10)
if (!Number.isInteger(requested) || requested < 0 || requested > 65535) {
  process.stderr.write('usage: node pglite_timescaledb.mjs <port>\n')
  process.exit(2)
}

const db = await PGlite.create({ extensions: { timescaledb } })

// PGlite is ONE backend shared by every client connection in turn, so whatever a client
// leaves behind (open or failed transaction, SET, search_path, temp tables, prepared
// statements, LISTEN) would leak into the next one. Reset the session before each client.
// It must run inside the exclusive section the socket handler takes for a client
// (db.runExclusive, which is used only by that handler): at that point the previous client
// has released the backend and the next cannot send anything yet. db.exec() would wait for
// the very lock we hold, so the raw protocol is used instead.
const RESET_STATEMENTS = [
  'ROLLBACK', // leaves an open/failed transaction (warns harmlessly when there is none)
  'DISCARD ALL', // SET values, temp tables, prepared statements, LISTEN, advisory locks...
  'SET search_path TO "$user", public',
  'SET client_min_messages = warning',
]

function frontendMessage(type, body = Buffer.alloc(0)) {
  const header = Buffer.alloc(5)
  header.write(type, 0, 'latin1')
  header.writeInt32BE(body.length + 4, 1)
  return new Uint8Array(Buffer.concat([header, body]))
}

async function resetSession() {
  // A Sync first ends an extended-protocol exchange the previous client may have dropped
  // midway (after an error the backend would otherwise ignore everything until a Sync).
  await db.execProtocol(frontendMessage('S'), { throwOnError: false, syncToFs: false })
  for (const sql of RESET_STATEMENTS) {
    const query = frontendMessage('Q', Buffer.from(`${sql}\0`, 'utf8'))
    try {
      await db.execProtocol(query, { throwOnError: true, syncToFs: false })
    } catch (err) {
      process.stderr.write(`session reset: ${sql}: ${err?.message ?? err}\n`)
    }
  }
}

const runExclusive = db.runExclusive.bind(db)
db.runExclusive = (fn) =>
  runExclusive(async () => {
    await resetSession()
    return fn()
  })

const server = new PGLiteSocketServer({
  db,
  host: '127.0.0.1',
  port: requested,
  connectionQueueTimeout: 120_000,
})
server.addEventListener('error', (e) => {
  process.stderr.write(`pglite server error: ${e.detail?.stack ?? e.detail}\n`)
})
await server.start()

let stopping = false
async function shutdown(code) {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(code), 3000).unref() // never hang on the way out
  try {
    await server.stop()
    await db.close()
  } catch (err) {
    process.stderr.write(`shutdown: ${err?.message ?? err}\n`)
  }
  process.exit(code)
}
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.stdin.on('end', () => shutdown(0))
process.stdin.on('error', () => shutdown(0))
process.stdin.resume()

const port = server.getServerConn().split(':').pop() // the actual port when 0 was asked
process.stdout.write(`ready ${port}\n`)
