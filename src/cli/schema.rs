use super::Result;

pub fn run() -> Result {
    println!("{}", crate::config::schema::json_schema_pretty());
    Ok(())
}
