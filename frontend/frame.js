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

/**
 * A function that runs `work` at most once per frame, just after the frame is drawn (a
 * task queued from the frame's callback runs once its rendering is done): work that is
 * asked for on every keystroke but must not delay what the user sees.
 */
export function onceAfterPaint(work) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() =>
      setTimeout(() => {
        pending = false;
        work();
      }, 0),
    );
  };
}
