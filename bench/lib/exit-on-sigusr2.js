// Preloaded into a store started with --cpu-prof: Nest re-raises SIGTERM after closing, and a process killed by a
// signal writes no profile, so the benchmark asks it to exit normally with SIGUSR2 instead.
process.on('SIGUSR2', () => process.exit(0));
