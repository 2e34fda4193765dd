// `cuface report`: the downsampling that keeps a long run's page small (against a brute-force
// reference), learning-rate cuts (against the engine's own plateau schedule), the run folder's files
// read back with clear errors, and a real short training run's page rendered by headless Chromium:
// no script error, every chart has data, the curves are on the screenshot.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "engine/lr_schedule.h"
#include "engine/philox.h"
#include "face/image/image.h"
#include "face/report/html_report.h"
#include "face/report/run_log.h"
#include "face/report/series.h"
#include "train_fixtures.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using report::Series;
using testing::cuface;
using testing::Outcome;
using testing::ScratchDir;
using testing::slurp;

const std::string kLossHeader =
    "step,epoch,lr,loss,loss_fr,loss_gender,loss_age,accuracy_fr,accuracy_gender,accuracy_age,images_per_s\n";

// ---- downsampling -------------------------------------------------------------------------------

// A random walk with rare spikes, one point per step.
Series noisy_series(size_t points) {
  Philox rng(7);
  Series s;
  double value = 0;
  for (size_t i = 0; i < points; ++i) {
    value += rng.next_normal();
    s.add(double(i + 1), rng.next_float() < 1e-4 ? value + 1000 : value);
  }
  return s;
}

// The bucket of x among `buckets` equal ranges of [first, last], computed here independently.
int bucket_of(double x, double first, double last, int buckets) {
  return std::min(buckets - 1, int(std::floor((x - first) / (last - first) * buckets)));
}

TEST(ReportSeries, MinMaxDownsampleKeepsEachBucketsExtremesOfAMillionSteps) {
  const Series all = noisy_series(1000000);
  const int buckets = 600;
  const Series kept = report::min_max_downsample(all, buckets);
  EXPECT_LE(kept.size(), 2u * buckets + 2);
  EXPECT_EQ(kept.x.front(), all.x.front());
  EXPECT_EQ(kept.x.back(), all.x.back());
  EXPECT_TRUE(std::is_sorted(kept.x.begin(), kept.x.end()));
  // Brute force: every bucket's lowest and highest value is among the kept points of that bucket.
  std::vector<double> lowest(buckets, INFINITY), highest(buckets, -INFINITY);
  for (size_t i = 0; i < all.size(); ++i) {
    const int b = bucket_of(all.x[i], all.x.front(), all.x.back(), buckets);
    lowest[size_t(b)] = std::min(lowest[size_t(b)], all.y[i]);
    highest[size_t(b)] = std::max(highest[size_t(b)], all.y[i]);
  }
  std::vector<std::multiset<double>> kept_values(buckets);
  for (size_t i = 0; i < kept.size(); ++i)
    kept_values[size_t(bucket_of(kept.x[i], all.x.front(), all.x.back(), buckets))].insert(kept.y[i]);
  for (int b = 0; b < buckets; ++b) {
    EXPECT_TRUE(kept_values[size_t(b)].count(lowest[size_t(b)])) << "bucket " << b;
    EXPECT_TRUE(kept_values[size_t(b)].count(highest[size_t(b)])) << "bucket " << b;
  }
  // Every kept point is a real one.
  for (size_t i = 0; i < kept.size(); ++i) EXPECT_EQ(kept.y[i], all.y[size_t(kept.x[i]) - 1]);

  // Bucket means against the brute-force means.
  const Series means = report::bucket_means(all, buckets);
  ASSERT_EQ(means.size(), size_t(buckets));
  std::vector<double> sum(buckets, 0.0);
  std::vector<int> count(buckets, 0);
  for (size_t i = 0; i < all.size(); ++i) {
    const int b = bucket_of(all.x[i], all.x.front(), all.x.back(), buckets);
    sum[size_t(b)] += all.y[i], ++count[size_t(b)];
  }
  for (int b = 0; b < buckets; ++b) EXPECT_NEAR(means.y[size_t(b)], sum[size_t(b)] / count[size_t(b)], 1e-9);

  // A short series is drawn whole.
  const Series few = noisy_series(1202);
  EXPECT_EQ(report::min_max_downsample(few, buckets).size(), few.size());
  EXPECT_TRUE(report::bucket_means(few, buckets).empty());
}

// The rate as loss_debug.csv prints it (an ostream's 6 significant digits).
double printed(double lr) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", lr);
  return std::stod(text);
}

TEST(ReportSeries, LrCutsAreThePlateauScheduleShrinksNotTheWarmup) {
  // The engine's plateau schedule on a loss that falls, then stays flat: it shrinks the rate at
  // some checks. The cuts found in the logged rates are exactly those.
  PlateauSchedule schedule(0.1, /*patience=*/300, /*shrink=*/0.1, /*min_lr=*/1e-9, /*check_every=*/100);
  Philox rng(3);
  Series lr;
  std::vector<double> shrink_steps;
  const int64_t warmup = 50;
  for (int64_t step = 0; step < 6000; ++step) {
    lr.add(double(step + 1), printed(schedule.lr() * warmup_factor(step, warmup)));
    const size_t shrinks = schedule.shrinks();
    schedule.record((step < 1000 ? 5.0 - 0.004 * double(step) : 1.0) + 0.1 * rng.next_normal());
    if (schedule.shrinks() != shrinks) shrink_steps.push_back(double(step + 2));  // the next row has the new rate
  }
  ASSERT_GE(shrink_steps.size(), 2u) << "the flat loss should make the schedule shrink";
  const std::vector<report::LrCut> cuts = report::lr_cuts(lr);
  ASSERT_EQ(cuts.size(), shrink_steps.size());
  for (size_t i = 0; i < cuts.size(); ++i) {
    EXPECT_EQ(cuts[i].step, shrink_steps[i]);
    EXPECT_NEAR(cuts[i].factor, 0.1, 1e-5);
  }
}

// ---- the run folder ---------------------------------------------------------------------------

// A run folder with a config and the given loss_debug.csv rows (after the header).
fs::path fake_run(const ScratchDir& dir, const std::string& rows, const std::string& name = "run") {
  dir.write(name + "/config.json", R"({"task": "FR", "arch": "tiny", "steps": 10, "lr_schedule": "plateau"})");
  dir.write(name + "/loss_debug.csv", kLossHeader + rows);
  return dir / name;
}

std::string loss_row(int step, double loss) {
  return std::to_string(step) + ",0,0.1," + std::to_string(loss) + "," + std::to_string(loss) + ",,,0.5,,,100\n";
}

TEST(ReportRun, ResumedRowsReplaceTheRowsAfterTheCheckpointAndEmptyCellsAreLeftOut) {
  ScratchDir dir;
  std::string rows;
  for (int step = 1; step <= 5; ++step) rows += loss_row(step, 10 + step);
  for (int step = 4; step <= 6; ++step) rows += loss_row(step, 20 + step);  // resumed from step 3
  dir.write("run/valid.csv", "step,task,figure,value\n2,FR,gap,0.5\n4,FR,gap,0.7\n4,FR,gap,0.9\n6,FR,gap,null\n");
  const report::RunRecord run = report::read_run(fake_run(dir, rows), {});
  EXPECT_EQ(run.steps.step, (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(run.steps.series("loss").y, (std::vector<double>{11, 12, 13, 24, 25, 26}));
  EXPECT_TRUE(run.steps.series("loss_gender").empty());
  const Series& gap = run.validation.at("FR").at("gap");
  EXPECT_EQ(gap.x, (std::vector<double>{2, 4}));
  EXPECT_EQ(gap.y, (std::vector<double>{0.5, 0.9}));
}

TEST(ReportRun, AnIncompleteLastLineIsLeftOutWithANote) {
  ScratchDir dir;
  const fs::path run = fake_run(dir, loss_row(1, 3) + loss_row(2, 2) + "3,0,0.1,1.5");  // still being written
  const Outcome outcome = cuface(dir, "report " + run.string());
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_NE(outcome.err.find("loss_debug.csv: left out the last line, not yet complete"), std::string::npos)
      << outcome.err;
  EXPECT_NE(outcome.out.find("2 steps"), std::string::npos) << outcome.out;
}

// Each bad input: exit status 1, one message naming the file (and line), no report written.
TEST(ReportCommand, BadInputIsOneErrorNamingTheFileAndLine) {
  ScratchDir dir;
  struct Case {
    std::string name, loss_rows, valid, expected;
  };
  const std::vector<Case> cases = {
      {"empty", "", "", "loss_debug.csv has no rows: the run has not finished a step yet"},
      {"letters", loss_row(1, 2) + "2,0,0.1,abc,1,,,0.5,,,100\n", "", "loss_debug.csv:3: loss is 'abc', not a number"},
      {"short", loss_row(1, 2) + loss_row(2, 2) + "3,0,0.1\n" + loss_row(4, 2), "",
       "loss_debug.csv:4: 3 fields, the header has 11"},
      {"valid", loss_row(1, 2), "step,task,figure,value\n1,FR,gap,0.5\nx,FR,gap,0.5\n",
       "valid.csv:3: step is 'x', not a number"},
  };
  for (const Case& c : cases) {
    const fs::path run = fake_run(dir, c.loss_rows, c.name);
    if (!c.valid.empty()) dir.write(c.name + "/valid.csv", c.valid);
    const Outcome outcome = cuface(dir, "report " + run.string());
    EXPECT_EQ(outcome.status, 1) << c.name;
    EXPECT_NE(outcome.err.find((run / c.expected).string()), std::string::npos) << c.name << ": " << outcome.err;
    EXPECT_FALSE(fs::exists(run / "report.html")) << c.name;
  }

  // A zero-byte CSV, a folder that is no run, a missing folder, a file that is no evaluation output.
  const fs::path zero = fake_run(dir, "", "zero");
  dir.write("zero/loss_debug.csv", "");
  Outcome outcome = cuface(dir, "report " + zero.string());
  EXPECT_EQ(outcome.status, 1);
  EXPECT_NE(outcome.err.find((zero / "loss_debug.csv").string() + " is empty"), std::string::npos) << outcome.err;

  dir.write("photos/a.txt", "not a run");
  outcome = cuface(dir, "report " + (dir / "photos").string());
  EXPECT_EQ(outcome.status, 1);
  EXPECT_NE(outcome.err.find((dir / "photos").string() + " is not a run folder"), std::string::npos) << outcome.err;

  outcome = cuface(dir, "report " + (dir / "nowhere").string());
  EXPECT_EQ(outcome.status, 1);
  EXPECT_NE(outcome.err.find((dir / "nowhere").string() + ": no such run folder"), std::string::npos) << outcome.err;

  const fs::path good = fake_run(dir, loss_row(1, 2), "good");
  const fs::path stray = dir.write("stray.json", R"({"accuracy": 1})");
  outcome = cuface(dir, "report " + good.string() + " --eval " + stray.string());
  EXPECT_EQ(outcome.status, 1);
  EXPECT_NE(outcome.err.find(stray.string() + " is not an `eval-fr --report` or `eval-attr --report` file"),
            std::string::npos)
      << outcome.err;
  EXPECT_FALSE(fs::exists(good / "report.html"));

  outcome = cuface(dir, "report " + good.string() + " --out " + (dir / "missing/r.html").string());
  EXPECT_EQ(outcome.status, 1);
  EXPECT_NE(outcome.err.find("--out"), std::string::npos) << outcome.err;
}

// ---- the page ---------------------------------------------------------------------------------

// The <svg ...>...</svg> elements of a page.
std::vector<std::string> svg_elements(const std::string& html) {
  std::vector<std::string> found;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1))
    found.push_back(html.substr(at, html.find("</svg>", at) - at));
  return found;
}

// The value of `attribute` in the first tag of `element` ("" when absent).
std::string opening_attribute(const std::string& element, const std::string& attribute) {
  const std::string tag = element.substr(0, element.find('>'));
  const size_t at = tag.find(" " + attribute + "=\"");
  if (at == std::string::npos) return "";
  const size_t start = at + attribute.size() + 3;
  return tag.substr(start, tag.find('"', start) - start);
}

// Points of the polylines in an element whose tag holds `marker` (e.g. class="series").
size_t polyline_points(const std::string& element, const std::string& marker = "") {
  size_t points = 0;
  for (size_t at = element.find("<polyline"); at != std::string::npos; at = element.find("<polyline", at + 1)) {
    const std::string tag = element.substr(at, element.find('>', at) - at);
    if (tag.find(marker) == std::string::npos) continue;
    const size_t start = tag.find("points=\"") + 8;
    const std::string list = tag.substr(start, tag.find('"', start) - start);
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i] == ',') ++points;
  }
  return points;
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

TEST(ReportCommand, AMillionStepRunMakesASmallPage) {
  ScratchDir dir;
  dir.write("run/config.json", R"({"task": "FR", "arch": "resnet50", "steps": 1000000, "lr_schedule": "plateau"})");
  {
    std::FILE* csv = std::fopen((dir / "run/loss_debug.csv").c_str(), "w");
    ASSERT_NE(csv, nullptr);
    std::fputs(kLossHeader.c_str(), csv);
    for (int step = 1; step <= 1000000; ++step) {
      const double lr = step <= 400000 ? 0.1 : step <= 800000 ? 0.01 : 0.001;
      const double loss = 20 * std::exp(-step / 2e5) + 2 + 0.3 * std::sin(step * 0.37);
      std::fprintf(csv, "%d,%d,%g,%.5f,%.5f,,,%.4f,,,%.1f\n", step, step / 5000, lr, loss, loss, 1 - loss / 23,
                   900.0 + step % 200);
    }
    std::fclose(csv);
  }
  const Outcome outcome = cuface(dir, "report " + (dir / "run").string() + " --out " + (dir / "r.html").string());
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_NE(outcome.out.find("1000000 steps"), std::string::npos) << outcome.out;
  const std::string html = slurp(dir / "r.html");
  EXPECT_LT(html.size(), 250u * 1024) << "the page should not grow with the steps";
  const std::vector<std::string> charts = svg_elements(html);
  ASSERT_EQ(charts.size(), 4u);  // FR loss, accuracy, learning rate, throughput
  for (const std::string& chart : charts) {
    EXPECT_GT(polyline_points(chart, "class=\"series\""), 2u);
    EXPECT_LE(polyline_points(chart, "class=\"series\""), 2u * 600 + 2);
  }
  EXPECT_NE(html.find("Learning-rate cuts: step 400k \u00d70.1, step 800k \u00d70.1."), std::string::npos);
}

// ---- a real run in a real browser -------------------------------------------------------------

bool have_chromium() { return std::system("command -v chromium > /dev/null 2>&1") == 0; }

// Runs headless Chromium on `page` with `flags`; stdout and stderr go to files in `dir`.
int chromium(const ScratchDir& dir, const fs::path& page, const std::string& flags) {
  const std::string command =
      "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=" + (dir / "profile").string() +
      " " + flags + " file://" + page.string() + " > " + (dir / "chromium.out").string() + " 2> " +
      (dir / "chromium.err").string();
  return std::system(command.c_str());
}

// Pixels of the screenshot within 24 of `rgb` in every channel.
int64_t pixels_near(const Image& image, int r, int g, int b) {
  int64_t count = 0;
  for (size_t i = 0; i + 2 < image.pixels.size(); i += 3)
    count += std::abs(image.pixels[i] - r) < 24 && std::abs(image.pixels[i + 1] - g) < 24 &&
             std::abs(image.pixels[i + 2] - b) < 24;
  return count;
}

TEST(ReportBrowser, ARealRunsPageRendersEveryChartWithoutScriptErrors) {
  ScratchDir dir;
  const std::string pack = testing::labelled_pack(dir);
  const fs::path run = dir / "run";
  Outcome outcome =
      cuface(dir, "train multi --train-sets " + pack + " --valid-sets " + pack + " --out " + run.string() +
                      " --arch tiny --input-size 32 --batch 8 --steps 60 --lr-schedule step --lr-steps 20,40"
                      " --warmup 5 --valid-every 20 --valid-pairs 200 --device cpu --workers 2 --margin cosface"
                      " --margin-s 16 --margin-m 0.1 --checkpoint-every 0 --log-every 20");
  ASSERT_EQ(outcome.status, 0) << outcome.err;

  // Evaluations saved for the run: eval-fr's report and ROC in RUN/eval/, eval-attr's given with --eval.
  std::vector<std::vector<std::string>> people;
  for (const fs::directory_entry& person : fs::directory_iterator(dir / "labelled")) {
    std::vector<std::string> images;
    for (const fs::directory_entry& image : fs::directory_iterator(person.path()))
      images.push_back(image.path().string());
    std::sort(images.begin(), images.end());
    people.push_back(images);
  }
  std::sort(people.begin(), people.end());
  std::string pairs, predictions = "path,predicted,true\n";
  for (size_t p = 0; p < people.size(); ++p) {
    const size_t q = (p + 1) % people.size();
    for (size_t i = 0; i + 1 < people[p].size(); ++i) {
      pairs += people[p][i] + " " + people[p][i + 1] + " 1\n" + people[p][i] + " " + people[q][i] + " 0\n";
      const std::string truth = p % 2 ? "female" : "male", other = p % 2 ? "male" : "female";
      predictions += people[p][i] + "," + (i % 4 == 3 ? other : truth) + "," + truth + "\n";
    }
  }
  dir.write("pairs.txt", pairs);
  dir.write("predictions.csv", predictions);
  fs::create_directories(run / "eval");
  outcome = cuface(dir, "eval-fr --model " + run.string() + " --pairs " + (dir / "pairs.txt").string() +
                            " --images / --report " + (run / "eval/fr.json").string() + " --roc " +
                            (run / "eval/fr-roc.csv").string());
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  outcome = cuface(dir, "eval-attr --predictions " + (dir / "predictions.csv").string() + " --report " +
                            (dir / "gender.json").string());
  ASSERT_EQ(outcome.status, 0) << outcome.err;

  outcome = cuface(dir, "report " + run.string() + " --eval " + (dir / "gender.json").string());
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_NE(outcome.out.find("60 steps, 3 validations, 3 evaluations"), std::string::npos) << outcome.out;
  const fs::path page = run / "report.html";
  const std::string html = slurp(page);

  // Self-contained: nothing to fetch (the only URL is SVG's namespace name).
  EXPECT_EQ(occurrences(html, "://"), occurrences(html, "http://www.w3.org/2000/svg"));
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_EQ(html.find(" href="), std::string::npos);
  // Loss (sum, FR, gender, age), batch accuracy, LR, img/s; FR accuracy, gap, distances; gender and age
  // accuracy; the ROC: each with data.
  const std::vector<std::string> charts = svg_elements(html);
  ASSERT_EQ(charts.size(), 13u);
  for (const std::string& chart : charts) EXPECT_GE(polyline_points(chart), 3u) << chart.substr(0, 300);
  EXPECT_NE(html.find("Learning-rate cuts: step 21 \u00d70.1, step 41 \u00d70.1."), std::string::npos);
  for (const char* expected : {"Gender confusion at step 60", "Age confusion at step 60", "Confusion: gender.json",
                               "Verification: fr.json", "ROC: fr-roc.csv", "<caption>config.json</caption>"})
    EXPECT_NE(html.find(expected), std::string::npos) << expected;

  if (!have_chromium())
    GTEST_SKIP() << "chromium is not installed (apt-get install chromium, or scripts/setup.sh --all)";
  // One rendering gives the DOM after the page's script ran, the console and a screenshot.
  ASSERT_EQ(chromium(dir, page,
                     "--enable-logging=stderr --v=0 --dump-dom --window-size=1400,4800 --screenshot=" +
                         (dir / "report.png").string()),
            0)
      << slurp(dir / "chromium.err");
  // The script ran to its end and counted every chart's points, as many as the page holds; the
  // console has no error.
  const std::string dom = slurp(dir / "chromium.out");
  const std::string console = slurp(dir / "chromium.err");
  EXPECT_EQ(console.find("Uncaught"), std::string::npos) << console;
  EXPECT_EQ(console.find(":CONSOLE"), std::string::npos) << console;
  EXPECT_NE(dom.find("data-ready=\"12\""), std::string::npos) << "the page's script did not finish";
  size_t counted = 0;
  for (const std::string& chart : svg_elements(dom)) {
    if (opening_attribute(chart, "class") != "chart") continue;
    const std::string points = opening_attribute(chart, "data-points");
    ASSERT_FALSE(points.empty()) << chart.substr(0, 300);
    EXPECT_EQ(std::stoul(points), polyline_points(chart, "class=\"series\""));
    EXPECT_GT(std::stoul(points), 0u);
    ++counted;
  }
  EXPECT_EQ(counted, 12u);

  // The screenshot: the curves' colours are on it (FR blue, gender orange, age green, LR purple).
  const std::vector<uint8_t> png = read_file((dir / "report.png").string());
  Image shot;
  std::string error;
  ASSERT_TRUE(decode_image(png.data(), png.size(), shot, error)) << error;
  EXPECT_EQ(shot.width, 1400);
  EXPECT_EQ(shot.height, 4800);
  EXPECT_GT(pixels_near(shot, 0x1f, 0x77, 0xb4), 2000);
  EXPECT_GT(pixels_near(shot, 0xff, 0x7f, 0x0e), 2000);
  EXPECT_GT(pixels_near(shot, 0x2c, 0xa0, 0x2c), 2000);
  EXPECT_GT(pixels_near(shot, 0x94, 0x67, 0xbd), 300);
}

}  // namespace
}  // namespace cuface
