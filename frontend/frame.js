// Work that is asked for many times a frame (every keystroke, every presence message) but
// only needs doing once before the next paint.

/** A function that runs `draw` at most once per animation frame, however often it is called. */
export function onceAFrame(draw) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  };
}
