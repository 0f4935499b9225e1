#include "crypto/sign.h"

#include <gtest/gtest.h>

#include <string>

#include "crypto/keys.h"

namespace roster::crypto {
namespace {

TEST(SignTest, ASignatureChecksOnlyUnderItsKeyAndOverItsMessage) {
  Key key = GenerateKey();
  const std::string pk = AuditPublicKey(key);
  ASSERT_EQ(pk.size(), kSignPublicKeyBytes);
  const std::string sig = SignAudit(key, "checkpoint 7 abc");
  ASSERT_EQ(sig.size(), kSignatureBytes);
  EXPECT_TRUE(VerifySignature(pk, "checkpoint 7 abc", sig));
  EXPECT_FALSE(VerifySignature(pk, "checkpoint 7 abd", sig));
  std::string flipped = sig;
  flipped[10] = static_cast<char>(flipped[10] ^ 1);
  EXPECT_FALSE(VerifySignature(pk, "checkpoint 7 abc", flipped));
  EXPECT_FALSE(VerifySignature(AuditPublicKey(GenerateKey()), "checkpoint 7 abc", sig));
  EXPECT_FALSE(VerifySignature(pk.substr(1), "checkpoint 7 abc", sig));
  EXPECT_FALSE(VerifySignature(pk, "checkpoint 7 abc", sig.substr(1)));
}

// The index master never rotates, so neither does the audit key: checkpoints
// signed before `keys rotate` still check with the public half kept before.
TEST(SignTest, ThePublicHalfOutlivesARotationAndSurvivesTheKeyFile) {
  Key key = GenerateKey();
  const std::string pk = AuditPublicKey(key);
  auto rotating = BeginRotation(key);
  ASSERT_TRUE(rotating.ok());
  Key rotated = FinishRotation(*rotating);
  EXPECT_EQ(AuditPublicKey(rotated), pk);
  auto back = ParseKey(FormatKey(rotated).view());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(AuditPublicKey(*back), pk);
  EXPECT_TRUE(VerifySignature(pk, "m", SignAudit(*back, "m")));
}

}  // namespace
}  // namespace roster::crypto
