// Drives Motia's real Node stream client (@motiadev/stream-client-node) against a stream server and prints
// what it sees, one JSON object a line, for tests/compat/test_stream_client_node.py:
//   {"kind": "open"}                                the socket opened
//   {"kind": "raw", "message": {...}}               every message the socket received, before the client
//                                                   routes it (so a message that arrives twice shows twice)
//   {"kind": "group", "state": [...]}               the group subscription's state, each time it changes
//   {"kind": "item", "state": {...} | null}         the item subscription's state, each time it changes
//   {"kind": "group-event" | "item-event", "type": T, "data": D}   a custom event (Stream.send) reaching a
//                                                   subscription's onEvent listener
//   {"kind": "close"}                               the socket closed (the client reconnects 2 s later)
// Usage: node drive.mjs WS_URL STREAM GROUP ITEM EVENT_TYPE[,EVENT_TYPE...]
// With MOTIA_STREAM_TOKEN set, the client offers it as the client's README shows: protocols
// ['Authorization', token] (the Sec-WebSocket-Protocol header).
// A line "close" on stdin closes the subscriptions and the client, then the script exits.
import { createInterface } from 'node:readline'
import { Stream } from '@motiadev/stream-client-node'

const [url, streamName, groupId, itemId, eventTypes] = process.argv.slice(2)
if (!url || !streamName || !groupId || !itemId || !eventTypes) {
  console.error('usage: node drive.mjs WS_URL STREAM GROUP ITEM EVENT_TYPE[,EVENT_TYPE...]')
  process.exit(2)
}

const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)

const token = process.env.MOTIA_STREAM_TOKEN
const stream = new Stream(url, token ? { protocols: ['Authorization', token] } : undefined)
// The adapter's `ws` is the `ws` package's WebSocket (an EventEmitter): prepend a listener so each raw
// message is printed before the client's own listener turns it into state changes. The client makes a
// new socket 2 s after one closes (and joins again): tap each.
const tap = (socket) => {
  socket.prependListener('message', (data) => print({ kind: 'raw', message: JSON.parse(data.toString()) }))
  socket.on('open', () => print({ kind: 'open' }))
  socket.on('close', (code, reason) => print({ kind: 'close', code, reason: reason.toString() }))
  socket.on('error', (error) => print({ kind: 'error', error: String(error) }))
}
tap(stream.ws.ws)
const createSocket = stream.createSocket.bind(stream)
stream.createSocket = () => {
  const adapter = createSocket()
  tap(adapter.ws)
  return adapter
}

const group = stream.subscribeGroup(streamName, groupId)
group.addChangeListener((state) => print({ kind: 'group', state }))
const item = stream.subscribeItem(streamName, groupId, itemId)
item.addChangeListener((state) => print({ kind: 'item', state }))
for (const type of eventTypes.split(',')) {
  group.onEvent(type, (data) => print({ kind: 'group-event', type, data }))
  item.onEvent(type, (data) => print({ kind: 'item-event', type, data }))
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'close') return
  const socket = stream.ws.ws
  item.close() // "leave" frames
  group.close()
  stream.close() // closes the socket and removes every listener, ours included
  const exit = () => {
    print({ kind: 'closed' })
    process.exit(0)
  }
  // exit once the close handshake is done, so the leave frames and the close frame reach the server
  if (socket.readyState === socket.CLOSED) exit()
  socket.once('close', exit)
  setTimeout(exit, 5000).unref()
})
