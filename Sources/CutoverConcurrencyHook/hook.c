#include "CutoverConcurrencyHook.h"

extern void *_Nullable swift_task_enqueueGlobal_hook;

void *_Nullable *_Nonnull cutover_concurrency_enqueue_hook(void) {
    return &swift_task_enqueueGlobal_hook;
}
