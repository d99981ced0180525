// The row formats of data.format (docs/DATA.md): detection, the R1-Distill chat template and
// its label masks (by hand and against Hugging Face's apply_chat_template through
// tests/fixtures/chat), the same conversation in every format, bad rows of every format, and
// the real three-column rows converted to messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "r1dist/config/config.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/loader.h"
#include "r1dist/data/prompt_template.h"
#include "support/tokenizer.h"

namespace r1dist::test {
namespace {

using nlohmann::json;

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

const std::string kUser = "<\uFF5CUser\uFF5C>", kAssistant = "<\uFF5CAssistant\uFF5C>",
                  kEos = "<\uFF5Cend\u2581of\u2581sentence\uFF5C>";

DataConfig config_for(const std::string& path, DataFormat format) {
  DataConfig c;
  c.path = path;
  c.format = format;
  c.threads = 2;
  c.max_seq_len = 4096;
  // data.train_on_prompt at its default: loss on the assistant turns only.
  return c;
}

// The one training example of a one-row file.
Example only_example(const DataConfig& c) {
  const Dataset d = build_dataset(c, r1_tokenizer(), 3407);
  EXPECT_EQ(d.train.size(), 1u);
  return d.train.empty() ? Example{} : d.train[0];
}

std::vector<int32_t> enc(const std::string& s) { return r1_tokenizer().encode(s); }

// Ids and labels built by hand from segments (text, labelled), BOS first and unlabelled.
struct Expected {
  std::vector<int32_t> ids, labels;
};
Expected by_hand(const std::vector<std::pair<std::string, bool>>& segments) {
  Expected e;
  e.ids.push_back(*r1_tokenizer().bos_id());
  e.labels.push_back(-100);
  for (const auto& [text, label] : segments) {
    for (int32_t id : enc(text)) {
      e.ids.push_back(id);
      e.labels.push_back(label ? id : -100);
    }
  }
  return e;
}

// ---- the conversation "Q -> (reasoning R) A" in every format -----------------------------

const char* kQ = "头晕两天，怎么办？ 😵";
const char* kR = "Dizziness for two days: check blood pressure first.";
const char* kA = "Measure BP; see a doctor if it persists.";

Expected expected_single_turn() {
  return by_hand({{kUser + kQ + kAssistant, false},
                  {std::string("<think>\n") + kR + "\n</think>\n\n" + kA + kEos, true}});
}

Example one_row(DataFormat f, const json& row, const std::string& tmpl = "") {
  TempDir tmp;
  auto c = config_for(tmp / "rows.jsonl", f);
  c.template_text = tmpl;
  write_jsonl(c.path, {row});
  return only_example(c);
}

void expect_single_turn(const Example& x) {
  const Expected want = expected_single_turn();
  EXPECT_EQ(x.ids, want.ids);
  EXPECT_EQ(x.labels, want.labels);
}

TEST(DataFormats, MessagesReasoningField) {
  expect_single_turn(one_row(DataFormat::messages, {{"messages",
                                                     {{{"role", "user"}, {"content", kQ}},
                                                      {{"role", "assistant"}, {"content", kA}, {"reasoning_content", kR}}}}}));
}

TEST(DataFormats, MessagesThinkInsideContent) {
  expect_single_turn(one_row(
      DataFormat::messages,
      {{"messages",
        {{{"role", "user"}, {"content", kQ}},
         {{"role", "assistant"}, {"content", std::string("<think>\n") + kR + "\n</think>\n\n" + kA}}}}}));
}

TEST(DataFormats, ShareGpt) {
  expect_single_turn(one_row(DataFormat::sharegpt, {{"conversations",
                                                     {{{"from", "human"}, {"value", kQ}},
                                                      {{"from", "gpt"}, {"value", kA}, {"reasoning_content", kR}}}}}));
}

TEST(DataFormats, Alpaca) {
  expect_single_turn(one_row(DataFormat::alpaca, {{"instruction", kQ}, {"input", ""}, {"output", kA}, {"reasoning_content", kR}}));
  // A non-empty input follows the instruction after a blank line.
  const Example x = one_row(DataFormat::alpaca, {{"instruction", "I"}, {"input", "X"}, {"output", kA}});
  EXPECT_EQ(x.ids, by_hand({{kUser + "I\n\nX" + kAssistant, false}, {kA + kEos, true}}).ids);
}

TEST(DataFormats, PromptCompletion) {
  expect_single_turn(one_row(DataFormat::prompt_completion,
                             {{"prompt", kQ}, {"completion", std::string("<think>") + kR + "</think>" + kA}}));
}

TEST(DataFormats, MedicalO1WithChatTemplate) {
  expect_single_turn(
      one_row(DataFormat::medical_o1, {{"Question", kQ}, {"Complex_CoT", kR}, {"Response", kA}}, "chat"));
}

TEST(DataFormats, TextIsTheWholeTextWithLossOnAll) {
  // The rendered conversation as plain text: the same ids; labels on every token.
  const Example x = one_row(DataFormat::text, {{"text", kUser + kQ + kAssistant + "<think>\n" + kR +
                                                            "\n</think>\n\n" + kA + kEos}});
  const Expected want = expected_single_turn();
  EXPECT_EQ(x.ids, want.ids) << "the text's own EOS ends it: no second one";
  EXPECT_EQ(x.labels, x.ids);
  // A text that starts with BOS (apply_chat_template's output) gets no second one.
  const std::string bos = r1_tokenizer().decode({*r1_tokenizer().bos_id()});
  const Example z = one_row(DataFormat::text, {{"text", bos + kUser + kQ + kAssistant + "<think>\n" + kR +
                                                            "\n</think>\n\n" + kA + kEos}});
  EXPECT_EQ(z.ids, want.ids);
  // Whitespace after the final EOS is dropped: no trained newline, no second EOS.
  const Example w = one_row(DataFormat::text, {{"text", kUser + kQ + kAssistant + "<think>\n" + kR +
                                                            "\n</think>\n\n" + kA + kEos + "\n \n"}});
  EXPECT_EQ(w.ids, want.ids);
  // Whitespace before it is the text's own.
  const Example v = one_row(DataFormat::text, {{"text", "plain words\n" + kEos}});
  EXPECT_EQ(v.ids.size(), enc("plain words\n").size() + 2);
  EXPECT_EQ(v.ids.back(), *r1_tokenizer().eos_id());
  // A text without EOS gets one.
  const Example y = one_row(DataFormat::text, {{"text", "plain words"}});
  EXPECT_EQ(y.ids.back(), *r1_tokenizer().eos_id());
  EXPECT_EQ(y.ids.size(), enc("plain words").size() + 2);
}

TEST(DataFormats, TrainOnPromptPutsLossOnEverything) {
  TempDir tmp;
  auto c = config_for(tmp / "rows.jsonl", DataFormat::prompt_completion);
  c.train_on_prompt = true;
  write_jsonl(c.path, {json{{"prompt", kQ}, {"completion", kA}, {"reasoning_content", kR}}});
  const Example x = only_example(c);
  EXPECT_EQ(x.ids, expected_single_turn().ids);
  EXPECT_EQ(x.labels, x.ids);
}

TEST(DataFormats, DefaultTemplateOfEachFormat) {
  // medical_o1 keeps the built-in prompt template; the chat formats use the chat template.
  EXPECT_FALSE(PromptTemplate::for_format("", DataFormat::medical_o1).chat);
  EXPECT_FALSE(PromptTemplate::for_format("", DataFormat::automatic).chat);
  for (DataFormat f : {DataFormat::messages, DataFormat::sharegpt, DataFormat::alpaca, DataFormat::prompt_completion})
    EXPECT_TRUE(PromptTemplate::for_format("", f).chat) << to_string(f);
  EXPECT_TRUE(PromptTemplate::for_format("chat", DataFormat::medical_o1).chat);
  EXPECT_FALSE(PromptTemplate::for_format("Q {question}", DataFormat::messages).chat);
  EXPECT_EQ(PromptTemplate::parse("chat").render_prompt("hi"), kUser + "hi" + kAssistant + "<think>\n");
}

TEST(DataFormats, PromptTemplateRendersSingleTurnRowsOfAnyFormat) {
  // A messages row through the built-in prompt template equals the medical_o1 row.
  const std::string builtin = PromptTemplate::default_text();
  const Example m = one_row(DataFormat::medical_o1, {{"Question", kQ}, {"Complex_CoT", kR}, {"Response", kA}});
  const Example g = one_row(DataFormat::messages,
                            {{"messages", {{{"role", "user"}, {"content", kQ}},
                                           {{"role", "assistant"}, {"content", kA}, {"reasoning_content", kR}}}}},
                            builtin);
  EXPECT_EQ(m.ids, g.ids);
  EXPECT_EQ(m.labels, g.labels);
  EXPECT_EQ(m.prompt_tokens, g.prompt_tokens);
  // A multi-turn row cannot go through a prompt template: a bad row.
  TempDir tmp;
  auto c = config_for(tmp / "multi.jsonl", DataFormat::messages);
  c.template_text = builtin;
  write_jsonl(c.path, {json{{"messages",
                             {{{"role", "user"}, {"content", "a"}},
                              {{"role", "assistant"}, {"content", "b"}},
                              {{"role", "user"}, {"content", "c"}},
                              {{"role", "assistant"}, {"content", "d"}}}}}});
  try {
    build_dataset(c, r1_tokenizer(), 3407);
    ADD_FAILURE() << "a multi-turn row through a prompt template";
  } catch (const DataError& e) {
    EXPECT_HAS(std::string(e.what()), c.path + ":1: data.template is a prompt template");
  }
}

// ---- multi-turn masks by hand ------------------------------------------------------------

TEST(DataFormats, MasksCoverExactlyTheAssistantTurns) {
  TempDir tmp;
  auto c = config_for(tmp / "multi.jsonl", DataFormat::messages);
  write_jsonl(c.path, {json{{"messages",
                             {{{"role", "system"}, {"content", "First system."}},
                              {{"role", "system"}, {"content", "Be brief."}},
                              {{"role", "user"}, {"content", "Q1"}},
                              {{"role", "assistant"}, {"content", "<think>old</think>\n\nA1"}},
                              {{"role", "user"}, {"content", "Q2"}},
                              {{"role", "assistant"}, {"content", "A2"}, {"reasoning_content", "R2"}},
                              {{"role", "user"}, {"content", "Q3, unanswered"}}}}}});
  const Example x = only_example(c);
  // The last system prompt only; the earlier turn without its reasoning (the template's
  // history); the last assistant turn with it; the trailing user turn unlabelled.
  const Expected want = by_hand({{"Be brief." + kUser + "Q1" + kAssistant, false},
                                 {"\n\nA1" + kEos, true},
                                 {kUser + "Q2" + kAssistant, false},
                                 {"<think>\nR2\n</think>\n\nA2" + kEos, true},
                                 {kUser + "Q3, unanswered", false}});
  EXPECT_EQ(x.ids, want.ids);
  EXPECT_EQ(x.labels, want.labels);
  // Every labelled span ends with EOS, and each EOS is labelled.
  const int32_t eos = *r1_tokenizer().eos_id();
  EXPECT_EQ(std::count(x.labels.begin(), x.labels.end(), eos), 2);
  EXPECT_EQ(x.prompt_tokens, static_cast<int64_t>(1 + enc("Be brief." + kUser + "Q1" + kAssistant).size()));
}

// ---- against Hugging Face apply_chat_template ---------------------------------------------

TEST(DataFormats, ChatTemplateMatchesHuggingFaceFixture) {
  const std::string convs = fixture("chat/conversations.jsonl"), expected = fixture("chat/expected.jsonl");
  ASSERT_TRUE(std::filesystem::exists(convs)) << convs;
  if (!std::filesystem::exists(expected))
    GTEST_SKIP() << expected << " is absent: generate it on a machine with transformers: python3 "
                 << "tools/reference/make_chat_fixture.py .deps/tokenizer-r1";
  auto c = config_for(convs, DataFormat::messages);
  c.max_seq_len = 131072;
  const Dataset d = build_dataset(c, r1_tokenizer(), 3407);
  const auto want = read_jsonl(expected);
  ASSERT_EQ(d.train.size(), want.size());
  ASSERT_GE(want.size(), 20u);
  std::vector<const Example*> by_row(want.size());
  for (const Example& x : d.train) by_row.at(static_cast<size_t>(x.row)) = &x;
  for (size_t n = 0; n < want.size(); ++n) {
    const Example& x = *by_row[n];
    const auto ids = want[n].at("ids").get<std::vector<int32_t>>();
    const auto mask = want[n].at("assistant_mask").get<std::vector<int>>();
    EXPECT_EQ(x.ids, ids) << "conversation " << n << ": " << want[n].at("text").get<std::string>();
    ASSERT_EQ(mask.size(), x.labels.size()) << "conversation " << n;
    for (size_t i = 0; i < mask.size(); ++i)
      ASSERT_EQ(x.labels[i] != -100, mask[i] == 1) << "conversation " << n << " token " << i;
  }
}

// ---- detection ---------------------------------------------------------------------------

TEST(DataFormats, AutoDetectsEachFormatFromTheFirstRowsKeys) {
  const DataFields f;
  EXPECT_EQ(detect_format({"Question", "Complex_CoT", "Response"}, f), DataFormat::medical_o1);
  EXPECT_EQ(detect_format({"messages", "id"}, f), DataFormat::messages);
  EXPECT_EQ(detect_format({"conversations"}, f), DataFormat::sharegpt);
  EXPECT_EQ(detect_format({"instruction", "input", "output"}, f), DataFormat::alpaca);
  EXPECT_EQ(detect_format({"prompt", "completion"}, f), DataFormat::prompt_completion);
  EXPECT_EQ(detect_format({"text"}, f), DataFormat::text);
  EXPECT_EQ(detect_format({"foo"}, f), DataFormat::automatic);
  DataFields renamed;
  renamed.messages = "dialog";
  EXPECT_EQ(detect_format({"dialog"}, renamed), DataFormat::messages);

  TempDir tmp;
  auto c = config_for(tmp / "rows.json", DataFormat::automatic);
  c.on_bad_row = BadRowPolicy::skip;
  write_text(c.path, R"([{"foo": 1}, {"prompt": "p", "completion": "c"}, {"prompt": "q", "completion": "d"}])");
  LoadReport rep;
  const auto rows = load_rows(c, &rep);
  EXPECT_EQ(rep.format, DataFormat::prompt_completion);
  EXPECT_EQ(rows.size(), 2u);
  ASSERT_EQ(rep.skip_reasons.size(), 1u) << "the row before the first recognizable one is bad";
  EXPECT_HAS(rep.skip_reasons[0], "cannot tell the row format from this row's keys (foo)");
}

TEST(DataFormats, OldFileTypeValuesOfDataFormatAreRefusedWithAHint) {
  try {
    parse_config_string("[model]\npath = \"m\"\n[data]\nformat = \"jsonl\"\n", "cfg.toml");
    ADD_FAILURE() << "data.format = jsonl accepted";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_HAS(msg, "cfg.toml:4: data.format = 'jsonl': data.format is now the row format");
    EXPECT_HAS(msg, "HINT: delete this line");
  }
}

// ---- bad rows of every format ------------------------------------------------------------

struct BadCase {
  DataFormat format;
  std::string row, reason;
};

TEST(DataFormats, BadRowsOfEveryFormatNameFileLineAndReason) {
  const std::vector<BadCase> cases = {
      {DataFormat::messages, R"({"messages": []})", "\"messages\" is an empty conversation"},
      {DataFormat::messages, R"({"messages": "hi"})", "not a list of turns"},
      {DataFormat::messages, R"({"messages": [{"role": "user", "content": "q"}]})", "has no assistant turn"},
      {DataFormat::messages, R"({"messages": [{"role": "robot", "content": "q"}]})", "unknown role \"robot\""},
      {DataFormat::messages, R"({"messages": [{"role": "user", "content": 3}]})", "is a JSON number (3), not a string"},
      {DataFormat::messages, R"({"messages": [7]})", "messages[0] is a JSON number (7), not an object"},
      {DataFormat::messages, R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]})",
       "an empty assistant turn"},
      {DataFormat::messages, R"({"other": 1})", "field \"messages\" is missing"},
      {DataFormat::sharegpt, R"({"conversations": [{"from": "bot", "value": "x"}]})", "unknown from \"bot\""},
      {DataFormat::sharegpt, R"({"conversations": [{"from": "human", "value": "x"}]})", "has no assistant turn"},
      {DataFormat::alpaca, R"({"instruction": "i", "output": 5})", "is a JSON number (5), not a string"},
      {DataFormat::alpaca, R"({"instruction": "i", "input": [], "output": "o"})", "not a string"},
      {DataFormat::alpaca, R"({"output": "o"})", "missing"},
      {DataFormat::prompt_completion, R"({"prompt": "", "completion": "c"})", "field \"prompt\" is an empty string"},
      {DataFormat::text, R"({"text": null})", "text"},
      {DataFormat::text, R"("a string")", "the row is a JSON string (\"a string\"), not a JSON object"},
  };
  for (const BadCase& bc : cases) {
    TempDir tmp;
    auto c = config_for(tmp / "bad.jsonl", bc.format);
    write_text(c.path, bc.row + "\n");
    try {
      load_rows(c);
      ADD_FAILURE() << bc.row << " accepted";
    } catch (const DataError& e) {
      EXPECT_HAS(std::string(e.what()), c.path + ":1: ");
      EXPECT_HAS(std::string(e.what()), bc.reason);
    }
    // Skipped and counted next to a good row of the same format.
    const std::map<DataFormat, std::string> good = {
        {DataFormat::messages, R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})"},
        {DataFormat::sharegpt, R"({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})"},
        {DataFormat::alpaca, R"({"instruction": "i", "output": "o"})"},
        {DataFormat::prompt_completion, R"({"prompt": "p", "completion": "c"})"},
        {DataFormat::text, R"({"text": "t"})"}};
    c.on_bad_row = BadRowPolicy::skip;
    write_text(c.path, good.at(bc.format) + "\n" + bc.row + "\n");
    LoadReport rep;
    EXPECT_EQ(load_rows(c, &rep).size(), 1u) << bc.row;
    ASSERT_EQ(rep.skipped, 1) << bc.row;
    EXPECT_HAS(rep.skip_reasons[0], c.path + ":2: ");
  }
}

TEST(DataFormats, ATurnLongerThanMaxSeqLenIsABadRow) {
  TempDir tmp;
  auto c = config_for(tmp / "long.jsonl", DataFormat::messages);
  c.max_seq_len = 64;
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "word ";
  const json ok = {{"messages", {{{"role", "user"}, {"content", "q"}}, {{"role", "assistant"}, {"content", "a"}}}}};
  const json too_long = {
      {"messages", {{{"role", "user"}, {"content", long_text}}, {{"role", "assistant"}, {"content", "a"}}}}};
  write_jsonl(c.path, {ok, too_long});
  try {
    build_dataset(c, r1_tokenizer(), 3407);
    ADD_FAILURE() << "an over-long turn accepted";
  } catch (const DataError& e) {
    EXPECT_HAS(std::string(e.what()), c.path + ":2: the turns before an assistant turn alone are ");
    EXPECT_HAS(std::string(e.what()), "over data.max_seq_len = 64");
  }
  c.on_bad_row = BadRowPolicy::skip;
  const Dataset d = build_dataset(c, r1_tokenizer(), 3407);
  EXPECT_EQ(d.train.size(), 1u);
  EXPECT_EQ(d.load.skipped, 1);
}

// ---- the real rows, converted ---------------------------------------------------------------

TEST(DataFormats, RealRowsConvertedToMessagesTokenizeIdentically) {
  const std::string shared = shared_dir();
  const std::string real = shared + "/data/medical_o1_sample_en.json";
  if (shared.empty() || !std::filesystem::exists(real)) GTEST_SKIP() << "the real sample rows are absent";
  TempDir tmp;
  std::vector<json> converted;
  for (const auto& r : json::parse(read_text(real)))
    converted.push_back({{"messages",
                          {{{"role", "user"}, {"content", r.at("Question")}},
                           {{"role", "assistant"}, {"content", r.at("Response")}, {"reasoning_content", r.at("Complex_CoT")}}}}});
  write_jsonl(tmp / "messages.jsonl", converted);
  // Through the chat template, and through the built-in prompt template.
  for (const std::string tmpl : {std::string("chat"), PromptTemplate::default_text()}) {
    auto a = config_for(real, DataFormat::automatic);
    auto b = config_for(tmp / "messages.jsonl", DataFormat::automatic);
    a.max_seq_len = b.max_seq_len = 8192;
    a.eval_rows = b.eval_rows = 8;
    a.template_text = b.template_text = tmpl;
    const Dataset da = build_dataset(a, r1_tokenizer(), 3407), db = build_dataset(b, r1_tokenizer(), 3407);
    EXPECT_EQ(da.load.format, DataFormat::medical_o1);
    EXPECT_EQ(db.load.format, DataFormat::messages);
    ASSERT_EQ(da.train.size(), 150u);
    ASSERT_EQ(da.train.size(), db.train.size());
    ASSERT_EQ(da.eval.size(), db.eval.size());
    for (size_t i = 0; i < da.train.size(); ++i) {
      ASSERT_EQ(da.train[i].row, db.train[i].row);
      ASSERT_EQ(da.train[i].ids, db.train[i].ids) << "row " << da.train[i].row;
      ASSERT_EQ(da.train[i].labels, db.train[i].labels) << "row " << da.train[i].row;
    }
    for (size_t i = 0; i < da.eval.size(); ++i) ASSERT_EQ(da.eval[i].ids, db.eval[i].ids);
  }
}

}  // namespace
}  // namespace r1dist::test
