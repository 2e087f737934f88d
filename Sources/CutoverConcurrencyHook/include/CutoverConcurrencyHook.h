#ifndef CUTOVER_CONCURRENCY_HOOK_H
#define CUTOVER_CONCURRENCY_HOOK_H

/// The address of the Swift concurrency runtime's global enqueue hook (`swift_task_enqueueGlobal_hook`):
/// when set, the runtime hands every job without an executor of its own to that function.
///
/// Taken here, by the linker, rather than with `dlsym`: a binary linked with the Swift runtime inside
/// (`--static-swift-stdlib`) keeps the runtime's symbols out of its dynamic symbol table, so `dlsym` (how
/// NIO's own installer finds the hook) does not see it there.
void *_Nullable *_Nonnull cutover_concurrency_enqueue_hook(void);

#endif
