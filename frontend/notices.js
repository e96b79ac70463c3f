// What the status line says when the server ended or reset this tab's connection.

import { CloseCode } from "./wire.js";

/** Why a fatal close stops this tab. */
export function closeMessage(code, reason) {
  if (code === CloseCode.SUPERSEDED) return "opened in another tab or window";
  if (code === CloseCode.DELETED) return "this document was deleted";
  return reason || `closed (${code})`;
}

/** Why what this tab had not sent was dropped (generation.js). */
export const RESET_NOTICE =
  "This document was deleted or restored meanwhile: your unsent changes were dropped";
