//! On a machine where no font can be found, charts are still drawn (without text) and the report says why.
//! fontconfig is pointed at an empty configuration for this whole test binary, before any font is loaded.

mod common;

use common::*;

#[test]
fn charts_degrade_to_textless_without_fonts() {
    let dir = scratch("no-fonts");
    let conf = dir.join("empty-fonts.conf");
    write(&conf, "<?xml version=\"1.0\"?>\n<fontconfig></fontconfig>\n");
    // SAFETY (of intent): this binary has a single test, so no other thread reads the environment meanwhile.
    std::env::set_var("FONTCONFIG_FILE", &conf);
    std::env::set_var("FONTCONFIG_PATH", &dir);
    std::env::set_var("XDG_DATA_HOME", &dir);
    std::env::set_var("HOME", &dir);

    let run = dir.join("run");
    full_run(&run);
    let html = read(&report::build(&run).unwrap());
    assert!(
        html.contains("plots loss, lr, grad_norm, metrics drawn without text"),
        "no textless note"
    );
    assert_eq!(html.matches("drawn without text").count(), 1, "one note for all plots");
    for stem in ["loss", "lr", "grad_norm", "metrics"] {
        assert_png_chart(
            &run.join(format!("plots/{stem}.png")),
            if stem == "lr" {
                4
            } else if stem == "grad_norm" {
                2
            } else {
                0
            },
        );
        let svg = read(&run.join(format!("plots/{stem}.svg")));
        assert!(!svg.contains("<text"), "{stem}.svg has text although no font exists");
    }
}
