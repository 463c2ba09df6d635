// Same steps as NeuralAmpModelerCore tools/render.cpp (get_dsp, optional SetSlimmableSize,
// Reset(rate, 64), 64-sample blocks), with raw float32 input/output instead of WAV.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>
#include "NAM/dsp.h"
#include "NAM/get_dsp.h"
#include "NAM/slimmable.h"

int main(int argc, char** argv)
{
  if (argc < 4) { std::cerr << "usage: render_raw model.nam in.f32 out.f32 [slim]\n"; return 1; }
  auto model = nam::get_dsp(std::filesystem::path(argv[1]));
  if (argc >= 5)
  {
    auto* s = dynamic_cast<nam::SlimmableModel*>(model.get());
    if (!s) { std::cerr << "not slimmable\n"; return 1; }
    s->SetSlimmableSize(std::atof(argv[4]));
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::vector<char> x((std::istreambuf_iterator<char>(in)), {});
  std::vector<float> audio(x.size() / 4);
  std::memcpy(audio.data(), x.data(), audio.size() * 4);
  double rate = model->GetExpectedSampleRate();
  if (rate <= 0) rate = 48000.0;
  const int bs = 64;
  model->Reset(rate, bs);
  std::vector<NAM_SAMPLE> xin(audio.begin(), audio.end()), yout(audio.size());
  for (size_t i = 0; i < audio.size(); i += bs)
  {
    int n = (int)std::min<size_t>(bs, audio.size() - i);
    NAM_SAMPLE* ip = xin.data() + i; NAM_SAMPLE* op = yout.data() + i;
    model->process(&ip, &op, n);
  }
  std::vector<float> y(yout.begin(), yout.end());
  std::ofstream out(argv[3], std::ios::binary);
  out.write(reinterpret_cast<const char*>(y.data()), y.size() * 4);
  return 0;
}
