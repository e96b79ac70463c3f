// URLs of the pages and endpoints, relative to wherever the engine is mounted.

/** Everything before "/d/" in the page's path (or the path itself on the list page). */
export function mountPrefix() {
  const path = location.pathname;
  const at = path.indexOf("/d/");
  return at >= 0 ? path.slice(0, at) : path.replace(/\/+$/, "");
}

/** "/"-separated name -> URL path, each segment escaped. */
export function encodeName(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}
