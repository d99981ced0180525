// The data pipeline (src/data): loaders and their error messages, selection, the prompt
// template and label masks against the JavaScript reference tokenizer, the token cache, and
// the global batch order at 1, 2, 4 and 8 ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "r1dist/data/batch_plan.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/loader.h"
#include "r1dist/data/prompt_template.h"
#include "r1dist/data/select.h"
#include "r1dist/log/log.h"
#include "support/tokenizer.h"

namespace r1dist::test {
namespace {

using nlohmann::json;

std::string real_data() { return source_dir() + "/../shared/data/medical_o1_sample_en.json"; }
std::string sample_zh() { return std::string(R1DIST_SOURCE_DIR) + "/data/sample_zh.jsonl"; }

DataConfig config_for(const std::string& path) {
  DataConfig c;
  c.path = path;
  c.threads = 2;
  c.max_seq_len = 8192;
  return c;
}

const char* kRow = R"({"Question": "q", "Complex_CoT": "c", "Response": "r"})";

// The message of the DataError/UsageError load_rows throws, or a test failure.
template <class E = DataError>
std::string load_error(const DataConfig& c) {
  try {
    load_rows(c);
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error loading " << c.path;
  return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

// ---- loading and bad input --------------------------------------------------------------

TEST(DataLoad, RealJsonArrayAndBundledJsonl) {
  if (!std::filesystem::exists(real_data())) GTEST_SKIP() << real_data() << " is absent";
  LoadReport rep;
  const auto rows = load_rows(config_for(real_data()), &rep);
  EXPECT_EQ(rows.size(), 158u);
  EXPECT_EQ(rep.rows_in_file, 158);
  EXPECT_EQ(rep.skipped, 0);
  EXPECT_EQ(rows[5].index, 5);
  EXPECT_EQ(rows[0].question().rfind("A 45-year-old homeless man", 0), 0u);
}

TEST(DataLoad, BundledChineseSampleIsSyntheticMedicalO1Format) {
  const auto rows = load_rows(config_for(sample_zh()));
  ASSERT_GE(rows.size(), 60u);
  for (const auto& r : rows) {
    EXPECT_GE(r.cot().size(), 100u * 3) << "row " << r.index << ": CoT under ~100 characters";
    EXPECT_LE(r.cot().size(), 600u * 3) << "row " << r.index;
    EXPECT_NE(r.question().find("岁"), std::string::npos) << "row " << r.index;
  }
  EXPECT_NE(read_text(std::string(R1DIST_SOURCE_DIR) + "/data/README.md").find("SYNTHETIC"), std::string::npos);
}

TEST(DataLoad, InvalidJsonNamesRowAndLine) {
  TempDir tmp;
  auto c = config_for(tmp / "bad.json");
  c.on_bad_row = BadRowPolicy::skip;  // malformed JSON is never skipped
  write_text(c.path, std::string("[\n") + kRow + ",\n" + R"({"Question": "q2", "Complex_CoT": "c" "Response": "r"})" + "\n]\n");
  const auto msg = load_error(c);
  EXPECT_HAS(msg, tmp / "bad.json: row 1 (line 3): invalid JSON");
  EXPECT_HAS(msg, "syntax error");

  c.path = tmp / "bad.jsonl";
  write_text(c.path, std::string(kRow) + "\n\n" + R"({"Question": "q2",, })" + "\n");
  EXPECT_HAS(load_error(c), tmp / "bad.jsonl:3: invalid JSON");

  c.path = tmp / "obj.json";  // JSONL content under a .json name: the content decides
  write_text(c.path, std::string(kRow) + "\n" + kRow + "\n");
  EXPECT_EQ(load_rows(c).size(), 2u);
  c.path = tmp / "array.jsonl";  // and a JSON array under a .jsonl name
  write_text(c.path, std::string("\xEF\xBB\xBF \n[") + kRow + ",\n" + kRow + "]\n");
  EXPECT_EQ(load_rows(c).size(), 2u);

  c.path = tmp / "extra.json";
  write_text(c.path, std::string("[") + kRow + "]\n\n]");
  EXPECT_HAS(load_error(c), tmp / "extra.json:3: invalid JSON: text after the closing ']'");

  // Found by fuzz/fuzz_data_rows: a number too large for a double is valid JSON syntax that
  // the parser refuses with another exception type; it is named by its line like the rest.
  c.path = tmp / "overflow.jsonl";
  write_text(c.path, std::string(kRow) + "\n" + "{\"Question\": 2222222222.2e2222201883869}\n");
  const auto big = load_error(c);
  EXPECT_HAS(big, tmp / "overflow.jsonl:2: invalid JSON");
  EXPECT_HAS(big, "number overflow");
}

TEST(DataLoad, AUtf16FileOrAPrettyPrintedRowIsNamedForWhatItIs) {
  TempDir tmp;
  auto c = config_for(tmp / "u16.jsonl");
  write_text(c.path, std::string("\xFF\xFE{\0}\0", 6));
  EXPECT_HAS(load_error(c), c.path + ":1: the file is UTF-16");
  c.path = tmp / "pretty.jsonl";
  write_text(c.path, "{\n  \"Question\": \"q\",\n  \"Complex_CoT\": \"c\",\n  \"Response\": \"r\"\n}\n");
  const std::string e = load_error(c);
  EXPECT_HAS(e, c.path + ":1: invalid JSON");
  EXPECT_HAS(e, "read as JSON Lines: one whole row per line");
}

TEST(DataLoad, TruncatedFile) {
  TempDir tmp;
  auto c = config_for(tmp / "cut.json");
  c.on_bad_row = BadRowPolicy::skip;
  write_text(c.path, std::string("[\n") + kRow + ",\n" + kRow + ",\n{\"Question\": \"q3\",\n \"Complex_CoT\": \"unfini");
  const auto msg = load_error(c);
  EXPECT_HAS(msg, tmp / "cut.json: row 2 (line 4): truncated file: end of file inside this row (inside a string)");
  write_text(c.path, std::string("[\n") + kRow + ",\n" + kRow + "\n");
  EXPECT_HAS(load_error(c), tmp / "cut.json:4: truncated file");

  c.path = tmp / "cut.jsonl";
  write_text(c.path, std::string(kRow) + "\n" + kRow + "\n{\"Question\": \"q3\", \"Compl");
  EXPECT_HAS(load_error(c), tmp / "cut.jsonl:3: invalid JSON");
}

// One bad row in the middle of three: an error naming it, or a counted skip.
void check_bad_row(const std::string& name, const std::string& bad_row, const std::string& why) {
  TempDir tmp;
  SCOPED_TRACE(name);
  auto c = config_for(tmp / (name + ".json"));
  write_text(c.path, std::string("[\n  ") + kRow + ",\n  " + bad_row + ",\n  " + kRow + "\n]\n");
  const auto msg = load_error(c);
  EXPECT_HAS(msg, c.path + ": row 1 (line 3): " + why);
  EXPECT_HAS(msg, "data.on_bad_row = \"skip\"");

  c.on_bad_row = BadRowPolicy::skip;
  LoadReport rep;
  const auto rows = load_rows(c, &rep);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].index, 0);
  EXPECT_EQ(rows[1].index, 2);  // indices are file positions: the skipped row keeps its number
  EXPECT_EQ(rep.rows_in_file, 3);
  EXPECT_EQ(rep.skipped, 1);
  ASSERT_EQ(rep.skip_reasons.size(), 1u);
  EXPECT_HAS(rep.skip_reasons[0], c.path + ": row 1 (line 3): " + why);

  // JSONL: the same row on line 2.
  c.path = tmp / (name + ".jsonl");
  c.on_bad_row = BadRowPolicy::error;
  write_text(c.path, std::string(kRow) + "\n" + bad_row + "\n" + kRow + "\n");
  EXPECT_HAS(load_error(c), c.path + ":2: " + why);
}

TEST(DataLoad, MissingField) {
  check_bad_row("missing", R"({"Question": "q", "Response": "r"})", "missing field \"Complex_CoT\"");
}

TEST(DataLoad, NonStringField) {
  check_bad_row("number", R"({"Question": "q", "Complex_CoT": "c", "Response": 42})",
                "\"Response\" is a JSON number (42), not a string");
  check_bad_row("null", R"({"Question": null, "Complex_CoT": "c", "Response": "r"})",
                "\"Question\" is null, not a string");
  check_bad_row("array", R"(["q", "c", "r"])", "the row is a JSON array (3 elements), not a JSON object");
}

TEST(DataLoad, EmptyString) {
  check_bad_row("empty", R"({"Question": "q", "Complex_CoT": "", "Response": "r"})",
                "field \"Complex_CoT\" is an empty string");
  check_bad_row("blank", R"({"Question": " \n ", "Complex_CoT": "c", "Response": "r"})",
                "field \"Question\" is an empty string");
}

TEST(DataLoad, InvalidUtf8) {
  check_bad_row("utf8", "{\"Question\": \"q\", \"Complex_CoT\": \"caf\xE9!\", \"Response\": \"r\"}",
                "invalid UTF-8 (byte 0xE9");
  check_bad_row("surrogate", "{\"Question\": \"\xED\xA0\x80\", \"Complex_CoT\": \"c\", \"Response\": \"r\"}",
                "invalid UTF-8 (byte 0xED");
}

TEST(DataLoad, FiveMegabyteRow) {
  check_bad_row("huge", R"({"Question": "q", "Complex_CoT": ")" + std::string(5 << 20, 'x') + R"(", "Response": "r"})",
                "row too long: 5242882 bytes of text > 1 MiB limit");
}

TEST(DataLoad, EmptyFile) {
  TempDir tmp;
  for (const std::string name : {"empty.json", "empty.jsonl"}) {
    auto c = config_for(tmp / name);
    write_text(c.path, "");
    EXPECT_HAS(load_error(c), c.path + ":1: empty file: no rows");
    write_text(c.path, "\n  \n");
    EXPECT_HAS(load_error(c), c.path + ":1: empty file: no rows");
  }
  auto c = config_for(tmp / "array.json");
  write_text(c.path, "\n[ ]\n");
  EXPECT_HAS(load_error(c), c.path + ":2: no rows (an empty array)");
  c.path = tmp / "absent.json";
  EXPECT_HAS(load_error(c), c.path + ": cannot read the data file");
}

TEST(DataLoad, AllRowsBad) {
  TempDir tmp;
  auto c = config_for(tmp / "all.jsonl");
  c.on_bad_row = BadRowPolicy::skip;
  write_text(c.path, "{\"Question\": 1}\n{\"Question\": 2}\n");
  EXPECT_HAS(load_error(c), c.path + ": no usable rows: all 2 rows are bad; the first: " + c.path + ":1: \"Question\" is a JSON number (1), not a string");
}

TEST(DataLoad, SkippedCountInLog) {
  TempDir tmp;
  log::add_file(tmp / "run.log");
  auto c = config_for(tmp / "some_bad.jsonl");
  c.on_bad_row = BadRowPolicy::skip;
  write_text(c.path, std::string(kRow) + "\n{\"Question\": 1}\n" + kRow + "\n{}\n");
  LoadReport rep;
  load_rows(c, &rep);
  log::flush();
  EXPECT_EQ(rep.skipped, 2);
  const auto text = read_text(tmp / "run.log");
  EXPECT_HAS(text, "skipped 2 bad rows of 4 in " + c.path);
  EXPECT_HAS(text, c.path + ":2: \"Question\" is a JSON number (1), not a string");
  log::add_file(tmp / "after.log");  // release run.log before the directory goes
}

// options + answer_idx in the forms MCQ sets use; a malformed item leaves its row in training.
TEST(DataLoad, MultipleChoiceItemsInTheirCommonFormsAndMalformedOnesCounted) {
  TempDir tmp;
  auto c = config_for(tmp / "mcq.jsonl");
  const json base = json::parse(kRow);
  auto row = [&](const json& extra) {
    json r = base;
    if (extra.is_object()) r.update(extra);
    return r;
  };
  write_jsonl(c.path, {row({{"options", {{"A", "x"}, {"B", "y"}}}, {"answer_idx", "B"}}),
                       row({{"options", {"x", "y", "z"}}, {"answer_idx", 2}, {"question", "stem?"}}),
                       row({{"options", {"x", "y"}}, {"answer_idx", "A"}}),
                       row({{"options", {{"1", "x"}, {"2", "y"}}}, {"answer_idx", 1}}),
                       row({{"options", {{"A", "x"}}}}),                           // no answer_idx
                       row({{"options", {"x", "y"}}, {"answer_idx", 5}}),          // no such index
                       row({{"options", {{"A", "x"}}}, {"answer_idx", "C"}}),      // no such letter
                       row(json::object())});                                      // no item
  log::add_file(tmp / "run.log");
  LoadReport rep;
  const auto rows = load_rows(c, &rep);
  log::flush();
  ASSERT_EQ(rows.size(), 8u) << "a malformed item never takes its row out of training";
  EXPECT_EQ(rep.skipped, 0);
  EXPECT_EQ(rep.mcq_unusable, 3);
  ASSERT_TRUE(rows[0].mcq && rows[1].mcq && rows[2].mcq && rows[3].mcq);
  EXPECT_EQ(rows[0].mcq->answer, 1u);
  EXPECT_EQ(rows[0].mcq->stem, "q") << "the question column when the row has no \"question\"";
  EXPECT_EQ(rows[1].mcq->options, (std::vector<std::pair<std::string, std::string>>{{"A", "x"}, {"B", "y"}, {"C", "z"}}));
  EXPECT_EQ(rows[1].mcq->answer, 2u) << "a number is an array's 0-based index";
  EXPECT_EQ(rows[1].mcq->stem, "stem?");
  EXPECT_EQ(rows[2].mcq->answer, 0u);
  EXPECT_EQ(rows[3].mcq->answer, 0u) << "a number names an object's key";
  for (size_t i = 4; i < 8; ++i) EXPECT_FALSE(rows[i].mcq) << i;
  const auto text = read_text(tmp / "run.log");
  EXPECT_HAS(text, "3 rows of " + c.path + " carry options/answer_idx that make no multiple-choice item");
  EXPECT_HAS(text, c.path + ":5: field \"answer_idx\" is missing");
  EXPECT_HAS(text, c.path + ":6: answer_idx 5 is not an index of the 2 options");
  log::add_file(tmp / "after.log");

  // eval.mcq_path: the items of a file in any format (only the MCQ fields are read).
  write_jsonl(tmp / "medqa.jsonl", {json{{"question", "s1"}, {"options", {{"A", "a"}, {"B", "b"}}}, {"answer_idx", "A"}},
                                    json{{"meta", 1}},
                                    json{{"question", "s2"}, {"options", {"a", "b"}}, {"answer_idx", 1}}});
  const auto items = load_mcq_items(tmp / "medqa.jsonl", DataFields{});
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].stem, "s1");
  EXPECT_EQ(items[1].answer, 1u);
  write_jsonl(tmp / "none.jsonl", {json{{"question", "s1"}}});
  try {
    load_mcq_items(tmp / "none.jsonl", DataFields{});
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_HAS(std::string(e.what()), tmp / "none.jsonl" + ": no multiple-choice items in 1 rows");
  }
}

TEST(DataLoad, MoreRowsRequestedThanExist) {
  TempDir tmp;
  auto c = config_for(tmp / "three.jsonl");
  write_text(c.path, std::string(kRow) + "\n" + kRow + "\n" + kRow + "\n");
  c.n_samples = 10;
  try {
    select_rows(3, c, 3407);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_HAS(std::string(e.what()), "data.n_samples = 10 but " + c.path + " has only 3 usable rows");
  }
  const auto& tok = r1_tokenizer();
  EXPECT_THROW(build_dataset(c, tok, 3407), UsageError);
}

// ---- selection --------------------------------------------------------------------------

TEST(DataSelect, EvalDisjointFromTrainAndSeeded) {
  DataConfig c;
  c.n_samples = 100;
  c.sample = SampleMode::random;
  c.eval_rows = 10;
  const Split a = select_rows(158, c, 3407), b = select_rows(158, c, 3407), other = select_rows(158, c, 1);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.eval, b.eval);
  EXPECT_NE(a.train, other.train);
  EXPECT_EQ(a.train.size(), 90u);
  EXPECT_EQ(a.eval.size(), 10u);
  std::set<int64_t> all(a.train.begin(), a.train.end());
  for (int64_t e : a.eval) EXPECT_TRUE(all.insert(e).second) << "row " << e << " in train and eval";
  EXPECT_EQ(all.size(), 100u);
  EXPECT_GT(*all.rbegin(), 99) << "random selection should reach past the first 100 rows";

  c.sample = SampleMode::first;
  c.eval_rows = 0;
  c.eval_fraction = 0.2;
  const Split f = select_rows(158, c, 3407);
  std::set<int64_t> first(f.train.begin(), f.train.end());
  first.insert(f.eval.begin(), f.eval.end());
  EXPECT_EQ(f.eval.size(), 20u);
  EXPECT_EQ(first.size(), 100u);
  EXPECT_EQ(*first.rbegin(), 99);
  // The selection is pinned: a change of generator would change every run's rows.
  EXPECT_EQ(std::vector<int64_t>(a.eval.begin(), a.eval.begin() + 3), (std::vector<int64_t>{0, 9, 22}))
      << "eval rows " << json(a.eval).dump();

  c.eval_fraction = 0;
  c.eval_rows = 100;
  EXPECT_THROW(select_rows(158, c, 3407), UsageError);
}

// ---- template and tokens ----------------------------------------------------------------

TEST(DataTemplate, DefaultTemplateStructure) {
  const auto tpl = PromptTemplate::parse(PromptTemplate::default_text());
  Row r;
  r.turns = {{Turn::Role::user, "Q?", ""}, {Turn::Role::assistant, "R.", "C."}};
  const std::string text = tpl.render(r);
  EXPECT_HAS(text, "\n\n### Question:\nQ?\n\n### Response:\n<think>\nC.\n</think>\nR.");
  EXPECT_EQ(text.find("<think>"), text.find("### Response:\n") + 14) << "no <think> in the preamble";
  const auto parts = tpl.render_parts(r);
  EXPECT_EQ(parts.prompt + parts.response, text);
  EXPECT_EQ(parts.prompt, tpl.render_prompt("Q?"));
  EXPECT_EQ(parts.prompt.substr(parts.prompt.size() - 8), "\n<think>");
  EXPECT_EQ(parts.response, "\nC.\n</think>\nR.");
}

TEST(DataTemplate, PlaceholdersBracesAndErrors) {
  Row r;
  r.turns = {{Turn::Role::user, "q", ""}, {Turn::Role::assistant, "r", "c"}};
  const auto t = PromptTemplate::parse("{{x}} {question} => {cot}|{response}");
  EXPECT_EQ(t.render(r), "{x} q => c|r");
  EXPECT_EQ(t.render_prompt("q"), "{x} q => ") << "without <think>, the prompt ends at {cot}";
  EXPECT_EQ(PromptTemplate::parse("Q {question} A <think>{cot}</think> <think>{response}").render_prompt("q"),
            "Q q A <think>");
  EXPECT_EQ(PromptTemplate::parse("<think> {question}").render_prompt("q"), "<think> q")
      << "only a <think> after {question} ends the prompt";
  auto error = [](const std::string& text) -> std::string {
    try {
      PromptTemplate::parse(text);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_HAS(error("{question} {answer}"), "unknown placeholder {answer}");
  EXPECT_HAS(error("{cot} {response}"), "no {question} placeholder");
  EXPECT_HAS(error("{question} {"), "opens no placeholder");
  EXPECT_HAS(error("{question} }"), "unmatched '}'");
  EXPECT_HAS(error("{cot} {question} <think>"), "must come after {question}");
}

Row short_row() {
  Row r;
  r.turns = {{Turn::Role::user, "头晕两天，怎么办？", ""},
             {Turn::Role::assistant, "Measure BP; see a doctor if it persists.",
              "Dizziness for two days: check blood pressure first."}};
  return r;
}

TEST(DataTokens, PinnedIdsOfAShortRow) {
  // Obtained once from the JavaScript reference on the rendered default template:
  // node tools/js/reference.mjs encode --add-special --tokenizer .deps/tokenizer-r1 ...
  // (BOS + ids), then EOS 151643 appended.
  const std::vector<int32_t> want = {
      151646, 2610,  525,    458,    10321,  27279, 13,    4457,  279,    6457,  3405,  3685,  323,  975,
      1526,   432,   3019,   553,    3019,   25,    279,   1376,  14613,  11,    279,   3204,  11137, 11,
      323,    1128,  1035,   7683,   476,    5912,  1105,  700,   13,     8278,  1221,  2968,  697,  4226,
      382,    14374, 15846,  510,    116280, 102733, 3837, 102572, 26850,  14374, 5949,  510,   151648, 198,
      35,     96645, 369,    1378,   2849,   25,    1779,  6543,  7262,   1156,  624,   151649, 198,  32236,
      29067,  26,    1490,   264,    10668,  421,   432,   66045, 13,     151643};
  TempDir tmp;
  write_jsonl(tmp / "one.jsonl", {json{{"Question", short_row().question()},
                                       {"Complex_CoT", short_row().cot()},
                                       {"Response", short_row().response()}}});
  auto c = config_for(tmp / "one.jsonl");
  c.train_on_prompt = false;
  const Dataset d = build_dataset(c, r1_tokenizer(), 3407);
  ASSERT_EQ(d.train.size(), 1u);
  const Example& x = d.train[0];
  EXPECT_EQ(ids_str(x.ids), ids_str(want));
  // Label masks at the boundary: BOS + 54 prompt tokens, the last one <think> (151648).
  ASSERT_EQ(x.prompt_tokens, 55);
  EXPECT_EQ(x.ids[54], 151648);
  EXPECT_EQ(x.labels[54], -100) << "the last prompt token";
  EXPECT_EQ(x.labels[55], 198) << "the first response token ('\\n' after <think>)";
  EXPECT_EQ(x.labels.back(), 151643) << "EOS is labelled";
  EXPECT_EQ(std::count(x.labels.begin(), x.labels.end(), -100), 55);
  for (size_t i = 55; i < x.ids.size(); ++i) ASSERT_EQ(x.labels[i], x.ids[i]) << i;

  c.train_on_prompt = true;
  const Dataset whole = build_dataset(c, r1_tokenizer(), 3407);
  EXPECT_EQ(whole.train[0].labels, whole.train[0].ids);
  EXPECT_EQ(whole.train[0].prompt_tokens, 55);
}

TEST(DataTokens, RealAndChineseRowsMatchJavaScriptReference) {
  R1DIST_REQUIRE_NODE();
  const auto& tok = r1_tokenizer();
  const auto tpl = PromptTemplate::parse(PromptTemplate::default_text());
  std::vector<Example> examples;
  std::vector<json> texts;
  std::vector<std::string> paths = {sample_zh()};
  if (std::filesystem::exists(real_data())) paths.push_back(real_data());
  else std::printf("[ skipped  ] the real row: %s is absent\n", real_data().c_str());
  for (const auto& path : paths) {
    auto c = config_for(path);
    c.n_samples = 1;
    c.train_on_prompt = false;
    const Dataset d = build_dataset(c, tok, 3407);
    ASSERT_EQ(d.train.size(), 1u);
    EXPECT_EQ(d.split_encoded, 0) << "the default template's prompt ids are a prefix of the full text's";
    examples.push_back(d.train[0]);
    const auto rows = load_rows(c);
    texts.push_back(tpl.render(rows[0]));
    EXPECT_EQ(d.train[0].row, 0);
  }
  const auto js = js_encode(texts, /*add_special=*/true);
  ASSERT_EQ(js.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto want = js[i]["ids"].get<std::vector<int32_t>>();
    want.push_back(*tok.eos_id());
    const Example& x = examples[i];
    EXPECT_EQ(ids_str(x.ids), ids_str(want)) << paths[i];
    // The prompt is everything up to <think>; the response starts right after it.
    ASSERT_GT(x.prompt_tokens, 1);
    EXPECT_EQ(x.ids[x.prompt_tokens - 1], 151648) << paths[i];
    EXPECT_EQ(x.labels[x.prompt_tokens - 1], -100);
    EXPECT_EQ(x.labels[x.prompt_tokens], x.ids[x.prompt_tokens]);
    EXPECT_EQ(x.labels.back(), 151643);
  }
}

TEST(DataTokens, ThreadCountDoesNotChangeIds) {
  auto c = config_for(sample_zh());
  c.threads = 1;
  const Dataset one = build_dataset(c, r1_tokenizer(), 3407);
  c.threads = 2;
  const Dataset two = build_dataset(c, r1_tokenizer(), 3407);
  EXPECT_EQ(one.fingerprint, two.fingerprint) << "threads are not part of the cache key";
  ASSERT_EQ(one.train.size(), two.train.size());
  for (size_t i = 0; i < one.train.size(); ++i) {
    EXPECT_EQ(one.train[i].ids, two.train[i].ids) << i;
    EXPECT_EQ(one.train[i].labels, two.train[i].labels) << i;
  }
  EXPECT_EQ(one.split_encoded, 0);
}

TEST(DataTokens, OverlongTruncatedOrDropped) {
  const auto& tok = r1_tokenizer();
  auto c = config_for(sample_zh());
  const Dataset full = build_dataset(c, tok, 3407);
  std::vector<size_t> lens;
  for (const auto& x : full.train) lens.push_back(x.ids.size());
  std::sort(lens.begin(), lens.end());
  c.max_seq_len = static_cast<int64_t>(lens[lens.size() / 2]);  // half the rows are longer
  const int64_t longer = std::count_if(lens.begin(), lens.end(), [&](size_t n) { return int64_t(n) > c.max_seq_len; });
  ASSERT_GT(longer, 0);
  const Dataset cut = build_dataset(c, tok, 3407);
  EXPECT_EQ(cut.truncated, longer);
  EXPECT_EQ(cut.train.size(), full.train.size());
  for (size_t i = 0; i < cut.train.size(); ++i) {
    ASSERT_LE(int64_t(cut.train[i].ids.size()), c.max_seq_len);
    EXPECT_TRUE(std::equal(cut.train[i].ids.begin(), cut.train[i].ids.end(), full.train[i].ids.begin()));
  }
  c.overlong = OverlongPolicy::drop;
  const Dataset dropped = build_dataset(c, tok, 3407);
  EXPECT_EQ(dropped.dropped, longer);
  EXPECT_EQ(int64_t(dropped.train.size()), int64_t(full.train.size()) - longer);
}

// A row cut before its response teaches nothing: dropped and counted; held-out rows dropped
// are not replaced, and a held-out split left empty is refused.
TEST(DataTokens, RowsWithoutALossTokenAfterTheCutAreDropped) {
  const auto& tok = r1_tokenizer();
  TempDir tmp;
  auto c = config_for(tmp / "rows.jsonl");
  c.max_seq_len = 24;
  c.eval_rows = 1;
  const std::string long_q(400, 'x');
  write_jsonl(c.path, {json{{"Question", "short"}, {"Complex_CoT", "c"}, {"Response", "r"}},
                       json{{"Question", long_q}, {"Complex_CoT", "c"}, {"Response", "r"}},
                       json{{"Question", "short too"}, {"Complex_CoT", "c"}, {"Response", "r"}}});
  c.template_text = "{question} {response}";
  const Dataset d = build_dataset(c, tok, 3407);
  EXPECT_EQ(d.without_loss, 1);
  EXPECT_EQ(d.train.size() + d.eval.size(), 2u);
  for (const auto* split : {&d.train, &d.eval})
    for (const auto& x : *split) EXPECT_GT(loss_tokens(x), 0);
  // Only the long row held out: nothing left to evaluate.
  for (uint64_t seed = 0; seed < 64; ++seed) {
    const Split s = select_rows(3, c, seed);
    if (s.eval != std::vector<int64_t>{1}) continue;
    try {
      build_dataset(c, tok, seed);
      ADD_FAILURE() << "expected a DataError";
    } catch (const DataError& e) {
      EXPECT_HAS(std::string(e.what()), "none of the 1 held-out rows (data.eval_rows / data.eval_fraction) is left: "
                                        "0 longer than data.max_seq_len = 24 dropped (data.overlong), 1 without a loss token");
    }
    return;
  }
  ADD_FAILURE() << "no seed below 64 holds out row 1";
}

TEST(DataTokens, TemplateWithoutTheResponseIsRefused) {
  TempDir tmp;
  auto c = config_for(tmp / "rows.jsonl");
  write_text(c.path, std::string(kRow) + "\n");
  c.template_text = "Q: {question}";
  try {
    build_dataset(c, r1_tokenizer(), 3407);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_HAS(std::string(e.what()), "data.template has no {response} placeholder");
  }
  EXPECT_FALSE(PromptTemplate::parse("Q: {question}").has_response());
  EXPECT_TRUE(PromptTemplate::parse("chat").has_response());
  EXPECT_EQ(PromptTemplate::parse("Q: {question}").render_prompt("hi"), "Q: hi") << "a prompt for generation needs none";
}

TEST(DataCache, HitGivesIdenticalDataset) {
  const auto& tok = r1_tokenizer();
  TempDir tmp;
  auto c = config_for(tmp / "rows.jsonl");
  std::string text = read_text(sample_zh()) + "{\"Question\": 5}\n";
  write_text(c.path, text);
  c.on_bad_row = BadRowPolicy::skip;
  c.eval_rows = 4;
  c.train_on_prompt = false;
  const Dataset a = build_dataset(c, tok, 3407, tmp / "cache");
  const Dataset b = build_dataset(c, tok, 3407, tmp / "cache");
  EXPECT_FALSE(a.from_cache);
  EXPECT_TRUE(b.from_cache);
  EXPECT_TRUE(std::filesystem::exists(tmp / ("cache/" + a.fingerprint + ".bin")));
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  ASSERT_EQ(a.train.size(), b.train.size());
  ASSERT_EQ(a.eval.size(), 4u);
  for (size_t i = 0; i < a.train.size(); ++i) {
    EXPECT_EQ(a.train[i].row, b.train[i].row);
    EXPECT_EQ(a.train[i].ids, b.train[i].ids);
    EXPECT_EQ(a.train[i].labels, b.train[i].labels);
    EXPECT_EQ(a.train[i].prompt_tokens, b.train[i].prompt_tokens);
  }
  for (size_t i = 0; i < a.eval.size(); ++i) EXPECT_EQ(a.eval[i].ids, b.eval[i].ids);
  EXPECT_EQ(b.load.skipped, 1);
  EXPECT_EQ(b.load.rows_in_file, a.load.rows_in_file);
  EXPECT_EQ(b.load.skip_reasons, a.load.skip_reasons);
  EXPECT_EQ(b.rows_fingerprint, a.rows_fingerprint);

  // Any input change is a different key: the data bytes, the template, the settings.
  write_text(c.path, text + kRow + "\n");
  const Dataset changed = build_dataset(c, tok, 3407, tmp / "cache");
  EXPECT_FALSE(changed.from_cache);
  EXPECT_NE(changed.fingerprint, a.fingerprint);
  EXPECT_NE(changed.rows_fingerprint, a.rows_fingerprint) << "another row";
  // The rows' own fingerprint follows the rows, not the settings: a setting that changes no row
  // (a bad-row policy that meets no bad row) keeps it; one that changes a label does not.
  {
    auto same = config_for(tmp / "clean.jsonl");
    write_text(same.path, read_text(sample_zh()));
    const Dataset x = build_dataset(same, tok, 3407);
    same.on_bad_row = BadRowPolicy::skip;
    const Dataset y = build_dataset(same, tok, 3407);
    EXPECT_NE(x.fingerprint, y.fingerprint);
    EXPECT_EQ(x.rows_fingerprint, y.rows_fingerprint);
    same.train_on_prompt = !same.train_on_prompt;
    EXPECT_NE(build_dataset(same, tok, 3407).rows_fingerprint, x.rows_fingerprint);
  }
  c.template_text = "{question}<think>{cot}</think>{response}";
  EXPECT_FALSE(build_dataset(c, tok, 3407, tmp / "cache").from_cache);
  EXPECT_FALSE(build_dataset(c, tok, 1, tmp / "cache").from_cache);

  // A damaged cache file is rebuilt, not trusted.
  const std::string file = tmp / ("cache/" + changed.fingerprint + ".bin");
  std::string bytes = read_text(file);
  bytes[bytes.size() / 2] ^= 1;
  write_text(file, bytes);
  c.template_text.clear();
  const Dataset rebuilt = build_dataset(c, tok, 3407, tmp / "cache");
  EXPECT_FALSE(rebuilt.from_cache);
  EXPECT_TRUE(build_dataset(c, tok, 3407, tmp / "cache").from_cache);
}

// ---- batch order ------------------------------------------------------------------------

// ~150 examples of varied lengths; ids encode the example index so rows are recognisable.
std::vector<Example> synthetic_examples(size_t n) {
  std::vector<Example> xs(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t len = 5 + (i * 37) % 61;
    xs[i].row = int64_t(i);
    for (size_t t = 0; t < len; ++t) xs[i].ids.push_back(int32_t(1000 * i + t));
    xs[i].labels = xs[i].ids;
    xs[i].labels[0] = -100;
  }
  return xs;
}

TEST(DataBatch, SameGlobalRowsAtEveryWorldSize) {
  const auto xs = synthetic_examples(150);
  const int64_t G = 8, steps = 60;  // 60 steps x 8 = 3.2 epochs of 150
  struct Layout {
    int64_t micro, accum;
    int world;
  };
  const std::vector<Layout> layouts = {{2, 4, 1}, {2, 2, 2}, {2, 1, 4}, {1, 1, 8}};
  for (bool group : {false, true}) {
    SCOPED_TRACE(group ? "group_by_length" : "plain");
    const BatchPlan reference(example_lengths(xs), 3407, G, group);
    for (const auto& L : layouts) {
      SCOPED_TRACE("world " + std::to_string(L.world));
      // Every rank builds its own plan, as separate processes do.
      std::vector<BatchPlan> plans;
      for (int r = 0; r < L.world; ++r) plans.emplace_back(example_lengths(xs), 3407, L.micro * L.accum * L.world, group);
      for (int64_t step = 0; step < steps; ++step) {
        std::vector<int64_t> global;
        std::vector<int64_t> collated_ids;  // every micro-batch's padded ids, rank by rank
        for (int r = 0; r < L.world; ++r)
          for (const auto& mb : plans[size_t(r)].rank_micro_batches(step, r, L.world, L.micro, L.accum)) {
            ASSERT_EQ(int64_t(mb.size()), L.micro);
            global.insert(global.end(), mb.begin(), mb.end());
            std::vector<const Example*> rows;
            for (int64_t i : mb) rows.push_back(&xs[size_t(i)]);
            const Collated c = collate(rows, 151643);
            collated_ids.insert(collated_ids.end(), c.ids.begin(), c.ids.end());
            // Unpadded, each collated row is the example itself.
            for (size_t b = 0; b < rows.size(); ++b)
              ASSERT_TRUE(std::equal(rows[b]->ids.begin(), rows[b]->ids.end(), c.ids.begin() + int64_t(b) * c.seq));
          }
        ASSERT_EQ(global, reference.step_rows(step)) << "step " << step;
        if (L.micro == 2) {  // the same micro-batches, so the same padded tensors
          std::vector<int64_t> want;
          const auto rows = reference.step_rows(step);
          for (size_t k = 0; k < rows.size(); k += 2) {
            const auto c = collate({&xs[size_t(rows[k])], &xs[size_t(rows[k + 1])]}, 151643);
            want.insert(want.end(), c.ids.begin(), c.ids.end());
          }
          ASSERT_EQ(collated_ids, want) << "step " << step;
        }
      }
    }
  }
}

TEST(DataBatch, EachEpochCoversEveryRowOnce) {
  const auto xs = synthetic_examples(150);
  for (bool group : {false, true}) {
    const BatchPlan plan(example_lengths(xs), 3407, 8, group);
    EXPECT_EQ(plan.steps_per_epoch(), 19);
    std::vector<int64_t> stream;
    for (int64_t s = 0; s < 57; ++s) {  // 57 x 8 = 456 >= 3 epochs
      const auto rows = plan.step_rows(s);
      stream.insert(stream.end(), rows.begin(), rows.end());
    }
    std::vector<std::vector<int64_t>> epochs;
    for (int e = 0; e < 3; ++e) {
      std::vector<int64_t> ep(stream.begin() + e * 150, stream.begin() + (e + 1) * 150);
      epochs.push_back(ep);
      std::sort(ep.begin(), ep.end());
      std::vector<int64_t> all(150);
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(ep, all) << "epoch " << e << (group ? " (grouped)" : "");
    }
    EXPECT_NE(epochs[0], epochs[1]) << "each epoch has its own order";
  }
}

TEST(DataBatch, GroupByLengthReducesPadding) {
  const auto xs = synthetic_examples(150);
  auto padding = [&](bool group) {
    const BatchPlan plan(example_lengths(xs), 3407, 8, group);
    int64_t pad = 0;
    for (int64_t s = 0; s < 18; ++s) {  // full batches of epoch 0
      const auto rows = plan.step_rows(s);
      std::vector<const Example*> ptrs;
      for (int64_t i : rows) ptrs.push_back(&xs[size_t(i)]);
      const auto c = collate(ptrs, 0);
      pad += c.batch * c.seq - c.tokens;
      if (group) {  // a grouped batch is a run of the length-sorted order
        for (size_t k = 1; k < rows.size(); ++k) EXPECT_GE(xs[size_t(rows[k - 1])].ids.size(), xs[size_t(rows[k])].ids.size());
      }
    }
    return pad;
  };
  const int64_t plain = padding(false), grouped = padding(true);
  EXPECT_LT(grouped * 4, plain) << "grouped " << grouped << " vs plain " << plain << " pad tokens";
}

TEST(DataBatch, CollatePadsRightAndCountsShiftedLabels) {
  Example a, b;
  a.ids = {1, 2, 3, 4};
  a.labels = {-100, -100, 3, 4};
  b.ids = {5, 6};
  b.labels = {5, 6};
  const Collated c = collate({&a, &b}, 9);
  EXPECT_EQ(c.batch, 2);
  EXPECT_EQ(c.seq, 4);
  EXPECT_EQ(c.ids, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 9, 9}));
  EXPECT_EQ(c.labels, (std::vector<int64_t>{-100, -100, 3, 4, 5, 6, -100, -100}));
  EXPECT_EQ(c.tokens, 6);
  EXPECT_EQ(c.loss_tokens, 3);  // a: 3, 4; b: 6 (position 0 predicts nothing)
}

TEST(DataBatch, RankLayoutMustMatchGlobalBatch) {
  const BatchPlan plan(std::vector<int64_t>(20, 5), 1, 8, false);
  EXPECT_THROW(plan.rank_micro_batches(0, 0, 2, 2, 3), UsageError);
  EXPECT_THROW(plan.rank_micro_batches(0, 2, 2, 2, 2), UsageError);
  EXPECT_NO_THROW(plan.rank_micro_batches(0, 1, 2, 2, 2));
}

}  // namespace
}  // namespace r1dist::test
