// This tab's secret: 32 random hex digits, said in every hello and never shown to anyone
// else. The server derives the tab's public client id from it (collab/wire.py), so no other
// connection can speak for this tab, and one with the same secret takes over (close 4409).

/** A new secret for this tab. */
export function randomSecret() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
