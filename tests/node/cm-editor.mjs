// A CodeMirror 6 editor bound to the shared text with y-codemirror.next, as a new user of
// the y-websocket door would set it up; bundled by tests/test_browser_codemirror.py with
// esbuild (tests only: the project's own page has no build step).
//
// window.cm = {view, ytext, doc, provider}; the page sets location.hash to
// "#<ws url>|<room>|<name>|<color>" before loading this.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { EditorState } from '@codemirror/state'
import { EditorView, drawSelection } from '@codemirror/view'
import { yCollab } from 'y-codemirror.next'

const [url, room, name, color] = decodeURIComponent(location.hash.slice(1)).split('|')
const doc = new Y.Doc()
const ytext = doc.getText('text')
const provider = new WebsocketProvider(url, room, doc, { disableBc: true })
provider.awareness.setLocalStateField('user', { name, color, colorLight: color + '33' })
const view = new EditorView({
  state: EditorState.create({
    doc: ytext.toString(),
    extensions: [drawSelection(), yCollab(ytext, provider.awareness)]
  }),
  parent: document.querySelector('#editor')
})
window.cm = { view, ytext, doc, provider }
