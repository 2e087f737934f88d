#ifndef CUTOVER_SQLITE_SETTINGS_H
#define CUTOVER_SQLITE_SETTINGS_H

/// Turns on SQLite's query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) for the connection
/// `db` (an `sqlite3 *` of the library sqlite-nio builds); returns SQLite's result code.
///
/// Without it SQLite marks a prepared statement for recompilation whenever a parameter the planner looked
/// at is bound again (a `LIMIT ?`, or a parameter compared with a partial index's condition), which undoes
/// keeping statements prepared. `sqlite3_db_config` is variadic, which Swift cannot call, hence C.
int cutover_sqlite_enable_stable_plans(void *_Nonnull db);

#endif
