/** Injection token of the service's {@link ApiConfig}. */
export const API_CONFIG = Symbol('API_CONFIG');
