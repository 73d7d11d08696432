/** A control-plane problem the user can act on; its message says what to do. */
export class ControlPlaneError extends Error {
  override readonly name = 'ControlPlaneError';
}
