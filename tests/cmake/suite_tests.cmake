# Script mode (cmake -P), run after each build of a GoogleTest binary (tests/CMakeLists.txt,
# r1dist_suite_tests): lists the binary's tests and writes OUT, a CTest file with one test per
# suite, LABEL/SUITE, that runs the binary with --gtest_filter=SUITE.* in one process.
#   -D EXE=binary -D OUT=file -D LABEL=label -D WORKDIR=dir -D TIMEOUT=seconds
execute_process(COMMAND "${EXE}" --gtest_list_tests
  OUTPUT_VARIABLE listing ERROR_VARIABLE errors RESULT_VARIABLE rc TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} --gtest_list_tests failed (${rc}):\n${listing}${errors}")
endif()
string(REPLACE "\n" ";" lines "${listing}")
set(content "")
set(count 0)
foreach(line IN LISTS lines)
  # A suite's line starts in column 0 and ends its name with a dot, maybe followed by a comment
  # (typed suites: "Name/0.  # TypeParam = ..."); its tests follow, indented.
  if(line MATCHES "^([^ #][^ ]*)\\.( .*)?$")
    set(name "${LABEL}/${CMAKE_MATCH_1}")
    string(APPEND content
      "add_test([==[${name}]==] [==[${EXE}]==] [==[--gtest_filter=${CMAKE_MATCH_1}.*]==])\n"
      "set_tests_properties([==[${name}]==] PROPERTIES WORKING_DIRECTORY [==[${WORKDIR}]==]"
      " LABELS [==[${LABEL}]==] TIMEOUT ${TIMEOUT})\n")
    math(EXPR count "${count} + 1")
  endif()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${EXE} --gtest_list_tests listed no suite:\n${listing}")
endif()
file(WRITE "${OUT}" "${content}")
