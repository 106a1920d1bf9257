type Target = {
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: (type: string, listener: () => void) => void;
};

/**
 * Calls `listener` when a browser reports that the network is back, so a
 * client waiting out its backoff can retry at once: the failures were most
 * likely the network's. Does nothing where there is no `online` event
 * (Node). Returns a function that stops listening.
 */
export function onNetworkOnline(listener: () => void): () => void {
  const target = globalThis as Target;
  target.addEventListener?.("online", listener);
  return () => target.removeEventListener?.("online", listener);
}
