// Apply a whole-document update to a fresh Yjs document, as a new Yjs client would.
//
// stdin: {"update": b64}
// stdout: {"text": the Y.Text "text", "pending": whether anything in it waits for items
//          the update does not hold (a state that is not whole)}

import * as Y from 'yjs'

let input = ''
process.stdin.on('data', (chunk) => { input += chunk })
process.stdin.on('end', () => {
  const { update } = JSON.parse(input)
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Buffer.from(update, 'base64'))
  const pending = doc.store.pendingStructs !== null || doc.store.pendingDs !== null
  process.stdout.write(JSON.stringify({ text: doc.getText('text').toString(), pending }))
})
