// The prompt template: literal text with {question}, {cot} and {response}; "{{" and "}}"
// stand for braces. The template is re-parsed per render (it is a few hundred bytes, the
// rows are kilobytes), which keeps PromptTemplate a plain value.
#include "r1dist/data/prompt_template.h"

#include <algorithm>
#include <string_view>

namespace r1dist {

namespace {

enum class Slot { literal, question, cot, response };

struct Piece {
  Slot slot;
  std::string text;  // literal text
};

struct Parsed {
  std::vector<Piece> pieces;
  // The prompt is pieces[0, cut_piece) plus the first cut_offset bytes of pieces[cut_piece].
  size_t cut_piece = 0, cut_offset = 0;
};

Parsed parse_pieces(const std::string& t) {
  Parsed p;
  auto literal = [&](std::string_view s) {
    if (p.pieces.empty() || p.pieces.back().slot != Slot::literal) p.pieces.push_back({Slot::literal, ""});
    p.pieces.back().text += s;
  };
  for (size_t i = 0; i < t.size();) {
    if (t.compare(i, 2, "{{") == 0 || t.compare(i, 2, "}}") == 0) {
      literal(t.substr(i, 1));
      i += 2;
    } else if (t[i] == '{') {
      const size_t close = t.find('}', i);
      if (close == std::string::npos)
        throw UsageError("data.template: '{' at byte " + std::to_string(i) +
                         " opens no placeholder\nHINT: write {{ for a literal brace");
      const std::string name = t.substr(i + 1, close - i - 1);
      Slot slot;
      if (name == "question") slot = Slot::question;
      else if (name == "cot") slot = Slot::cot;
      else if (name == "response") slot = Slot::response;
      else
        throw UsageError("data.template: unknown placeholder {" + name +
                         "} (known: {question}, {cot}, {response})\nHINT: write {{ and }} for literal braces");
      p.pieces.push_back({slot, ""});
      i = close + 1;
    } else if (t[i] == '}') {
      throw UsageError("data.template: unmatched '}' at byte " + std::to_string(i) +
                       "\nHINT: write }} for a literal brace");
    } else {
      const size_t next = t.find_first_of("{}", i);
      const size_t end = next == std::string::npos ? t.size() : next;
      literal(std::string_view(t).substr(i, end - i));
      i = end;
    }
  }
  size_t q = p.pieces.size();
  for (size_t k = 0; k < p.pieces.size() && q == p.pieces.size(); ++k)
    if (p.pieces[k].slot == Slot::question) q = k;
  if (q == p.pieces.size()) throw UsageError("data.template has no {question} placeholder");
  // Boundary: the end of the first "<think>" after {question}; without one, the first
  // {cot} or {response}; without those, the end.
  p.cut_piece = p.pieces.size();
  for (size_t k = q + 1; k < p.pieces.size(); ++k) {
    const Piece& pc = p.pieces[k];
    if (pc.slot == Slot::literal) {
      const size_t at = pc.text.find("<think>");
      if (at != std::string::npos) {
        p.cut_piece = k;
        p.cut_offset = at + 7;
        break;
      }
    } else if (pc.slot != Slot::question) {
      p.cut_piece = k;
      break;
    }
  }
  for (size_t k = 0; k < p.cut_piece && k < p.pieces.size(); ++k)
    if (p.pieces[k].slot == Slot::cot || p.pieces[k].slot == Slot::response)
      throw UsageError("data.template: {cot} and {response} must come after {question} and the prompt's <think>");
  return p;
}

void append(std::string& out, const Piece& pc, const Row& row) {
  switch (pc.slot) {
    case Slot::literal: out += pc.text; break;
    case Slot::question: out += row.question(); break;
    case Slot::cot: out += row.cot(); break;
    case Slot::response: out += row.response(); break;
  }
}

}  // namespace

const std::string& PromptTemplate::default_text() {
  // The structure of the medical-o1 fine-tuning prompt (preamble, ### Question, ### Response,
  // <think> ... </think>) in our own words. The preamble must not contain "<think>": it is an added token.
  static const std::string text =
      "You are an experienced physician. Read the medical question below and work through it "
      "step by step: the key findings, the possible causes, and what would confirm or rule "
      "them out. Only then give your answer.\n"
      "\n"
      "### Question:\n"
      "{question}\n"
      "\n"
      "### Response:\n"
      "<think>\n"
      "{cot}\n"
      "</think>\n"
      "{response}";
  return text;
}

PromptTemplate PromptTemplate::parse(const std::string& text) {
  if (text == kChat) return PromptTemplate{"", true};
  parse_pieces(text);  // validates
  return PromptTemplate{text, false};
}

bool PromptTemplate::has_response() const {
  if (chat) return true;
  const Parsed p = parse_pieces(text);
  return std::any_of(p.pieces.begin(), p.pieces.end(), [](const Piece& pc) { return pc.slot == Slot::response; });
}

PromptTemplate PromptTemplate::for_format(const std::string& text, DataFormat format) {
  if (text.empty() && format != DataFormat::medical_o1 && format != DataFormat::automatic) return parse(kChat);
  return configured(text);
}

PromptTemplate::Parts PromptTemplate::render_parts(const Row& row) const {
  if (chat) {
    Parts out;
    for (const Segment& s : render_chat(row.turns)) {
      if (!s.label && out.response.empty()) out.prompt += s.text;
      else out.response += s.text;
    }
    return out;
  }
  const Parsed p = parse_pieces(text);
  Parts out;
  for (size_t k = 0; k < p.pieces.size(); ++k) {
    const Piece& pc = p.pieces[k];
    if (k < p.cut_piece) {
      append(out.prompt, pc, row);
    } else if (k == p.cut_piece) {
      out.prompt += pc.text.substr(0, p.cut_offset);
      if (pc.slot == Slot::literal) out.response += pc.text.substr(p.cut_offset);
      else append(out.response, pc, row);
    } else {
      append(out.response, pc, row);
    }
  }
  return out;
}

std::string PromptTemplate::render(const Row& row) const {
  Parts parts = render_parts(row);
  return parts.prompt + parts.response;
}

std::string PromptTemplate::render_prompt(const std::string& question) const {
  if (chat) return chat_prompt(question);
  Row row;
  row.turns = {{Turn::Role::user, question, ""}, {Turn::Role::assistant, "", ""}};
  return render_parts(row).prompt;
}

std::string PromptTemplate::render_segments(const Row& row, std::vector<Segment>& out) const {
  out.clear();
  if (chat) {
    out = render_chat(row.turns);
    return "";
  }
  if (row.turns.size() != 2 || row.turns[0].role != Turn::Role::user || row.turns[1].role != Turn::Role::assistant)
    return "data.template is a prompt template, which renders one user turn and one assistant turn; this row has " +
           std::to_string(row.turns.size()) + " turns" +
           (row.turns.empty() ? std::string() : std::string(" (the first: ") + to_string(row.turns[0].role) + ")") +
           "\nHINT: set data.template = \"chat\" for conversations";
  Parts parts;
  if (row.turns[1].content.find("</think>") != std::string::npos) {  // the reasoning inside the answer
    Row single = row;
    const ThinkSplit t = split_think(row.turns[1]);
    single.turns[1].reasoning = t.reasoning;
    single.turns[1].content = t.answer;
    parts = render_parts(single);
  } else {
    parts = render_parts(row);
  }
  out.push_back({std::move(parts.prompt), false});
  out.push_back({std::move(parts.response), true});
  return "";
}

namespace {
const std::string kUser = "<\uFF5CUser\uFF5C>", kAssistant = "<\uFF5CAssistant\uFF5C>",
                  kEos = "<\uFF5Cend\u2581of\u2581sentence\uFF5C>";

bool ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
std::string trim(std::string_view s) {
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return std::string(s);
}
}  // namespace

ThinkSplit split_think(const Turn& t) {
  ThinkSplit out;
  const size_t close = t.content.rfind("</think>");
  if (close != std::string::npos) {
    std::string_view before = std::string_view(t.content).substr(0, close);
    while (!before.empty() && ws(before.front())) before.remove_prefix(1);
    if (before.substr(0, 7) == "<think>") before.remove_prefix(7);
    out.has_think = true;
    out.reasoning = trim(before);
    out.answer = trim(std::string_view(t.content).substr(close + 8));
    return out;
  }
  out.answer = t.content;
  if (std::all_of(t.reasoning.begin(), t.reasoning.end(), ws)) return out;
  out.has_think = true;
  out.reasoning = trim(t.reasoning);
  out.answer = trim(t.content);
  return out;
}

std::vector<Segment> render_chat(const std::vector<Turn>& turns) {
  std::vector<Segment> out;
  std::string prompt;
  size_t last_assistant = turns.size();
  for (size_t i = 0; i < turns.size(); ++i) {
    if (turns[i].role == Turn::Role::system) prompt = turns[i].content;
    if (turns[i].role == Turn::Role::assistant) last_assistant = i;
  }
  for (size_t i = 0; i < turns.size(); ++i) {
    const Turn& t = turns[i];
    if (t.role == Turn::Role::user) {
      prompt += kUser + t.content;
    } else if (t.role == Turn::Role::text) {
      prompt += t.content;
    } else if (t.role == Turn::Role::assistant) {
      prompt += kAssistant;
      out.push_back({std::move(prompt), false});
      prompt.clear();
      std::string body;
      if (i == last_assistant) {
        const ThinkSplit s = split_think(t);
        body = s.has_think ? "<think>\n" + s.reasoning + "\n</think>\n\n" + s.answer : t.content;
      } else {
        const size_t close = t.content.rfind("</think>");
        body = close == std::string::npos ? t.content : t.content.substr(close + 8);
      }
      out.push_back({body + kEos, true});
    }
  }
  if (!prompt.empty()) out.push_back({std::move(prompt), false});
  return out;
}

std::string chat_prompt(const std::string& user_text) {
  return "<\uFF5CUser\uFF5C>" + user_text + "<\uFF5CAssistant\uFF5C><think>\n";
}

}  // namespace r1dist
