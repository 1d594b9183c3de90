//! `careslot-migrate`: sea-orm-migration's own command line, for development.
//! Production uses `careslot-api migrate`, which also serializes replicas.

fn main() {
    eprintln!("use `careslot-api migrate` (it takes the migration lock on PostgreSQL)");
    std::process::exit(2);
}
