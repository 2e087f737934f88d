#include "CutoverSQLiteSettings.h"

// sqlite-nio's copy of SQLite, with its prefixed names. Its header is not visible to this target (it is not
// a product of sqlite-nio), so the one function used is declared here; the linker finds it in the library.
extern int sqlite_nio_sqlite3_db_config(void *db, int op, ...);

// From sqlite3.h: SQLITE_DBCONFIG_ENABLE_QPSG.
enum { enable_qpsg = 1007 };

int cutover_sqlite_enable_stable_plans(void *_Nonnull db) {
    int enabled = 0;
    int code = sqlite_nio_sqlite3_db_config(db, enable_qpsg, 1, &enabled);
    return code != 0 ? code : (enabled == 1 ? 0 : 1);
}
