//! The density histogram: PNG decodes at the requested size and is not blank; SVG parses.

use std::path::Path;

use prism_stats::plot_density_histogram;

#[test]
fn density_histogram_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (png, svg) = (dir.path().join("d.png"), dir.path().join("d.svg"));
    let (png, svg) = match std::env::var("PRISM_KEEP_PLOTS") {
        Ok(keep) => (
            Path::new(&keep).join("d.png"),
            Path::new(&keep).join("d.svg"),
        ), // to look at
        Err(_) => (png, svg),
    };
    // 200 live features around 1e-3, a spike of 40 near 0.2, and 10 dead ones.
    let mut density: Vec<f64> = (0..200).map(|i| 1e-3 * (1.0 + (i % 7) as f64)).collect();
    density.extend(std::iter::repeat_n(0.2, 40));
    density.extend(std::iter::repeat_n(0.0, 10));
    let h = plot_density_histogram(
        &density,
        10_000,
        "layer 15 MLP",
        Some(&png),
        Some(&svg),
        (640, 400),
    )
    .unwrap();
    assert_eq!(h.dead, 10);
    // Measured on 10 000 tokens: nothing rarer than 1e-4 can be seen, so the axis starts there.
    assert_eq!(h.floor, -4.0);
    assert_eq!(h.bins[0].0, -4.0);
    assert_eq!(h.bins.last().unwrap().1, 0.0);
    assert_eq!(h.above_tenth, 40);
    assert_eq!(h.bins.iter().map(|b| b.2).sum::<usize>(), 240);
    let spike = h
        .bins
        .iter()
        .find(|b| b.0 <= 0.2f64.log10() && 0.2f64.log10() < b.1)
        .unwrap();
    assert_eq!(spike.2, 40);

    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 400));
    let coloured = img
        .pixels()
        .filter(|p| p[0] > 150 && p[1] < 130 && p[2] < 80)
        .count();
    assert!(
        coloured > 1000,
        "the bars should be drawn ({coloured} bar-coloured pixels)"
    );
    let dark = img
        .pixels()
        .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
        .count();
    assert!(
        dark > 500,
        "axes and text should be drawn ({dark} dark pixels)"
    );

    let text = std::fs::read_to_string(&svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let (mut rects, mut texts) = (0, String::new());
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Empty(e) | quick_xml::events::Event::Start(e)
                if e.name().as_ref() == b"rect" =>
            {
                rects += 1
            }
            quick_xml::events::Event::Text(t) => texts.push_str(&t.decode().unwrap()),
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    let live_bins = h.bins.iter().filter(|b| b.2 > 0).count();
    assert!(rects > live_bins, "{rects} rects for {live_bins} bars");
    assert!(texts.contains("10 dead"), "caption: {texts}");
    assert!(texts.contains("40 above 10 %"), "caption: {texts}");
    assert!(
        texts.contains("fired once (1/N)") && texts.contains("10 %"),
        "markers: {texts}"
    );
}
