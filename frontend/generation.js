// Generations (docs/operations.md#generations): a document deleted and made again, or
// restored, while this tab was away is another text. What the tab had not sent belongs to
// the one that is gone, so it is dropped, never merged into the new one.

import { RESET_NOTICE } from "./notices.js";
import { Synchronized } from "./otstates.js";
import { diffOp } from "./textops.js";
import { UndoManager } from "./undo.js";

/** Keep the welcome's generation (said in the next hello); true when it resets the tab. */
export function takeGeneration(client, welcome) {
  if (typeof welcome.generation === "string") client.generation = welcome.generation;
  return Boolean(welcome.reset);
}

/** Drop what `client` has not had acked, show the server's text, and say why. */
export function startOver(client, welcome) {
  client.sync = new Synchronized();
  client.sendingTotal = 0;
  client.history = new UndoManager();
  client.serverText = welcome.text;
  client.rev = welcome.rev;
  client.showChange(diffOp(client.text, welcome.text));
  client.notice = RESET_NOTICE;
}
